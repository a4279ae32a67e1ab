"""What a contract's texts claim about the agreement page, checked against the page."""

import re
from collections.abc import Iterable
from typing import Any

from schemas.contract_page import SECTIONS, TOPIC_WORDS, _valid_values, rule_clauses
from schemas.contract_terms import Finding, PathParts, render_path, rule_kind

# "clause 9", "Clause 8.1.2": a reference to the agreement page's numbering.
CLAUSE_REFERENCE = re.compile(r"\bclauses?\s+(\d+(?:\.\d+)*)", re.IGNORECASE)
# "(5 groups)" in a column's description: a count of its agreed values.
COUNT_IN_TEXT = re.compile(
    r"\((\d+) (groups|categories|values|types|kinds|options|codes|classes|bands)\)"
)
QUOTED = re.compile(r"[\"“']([^\"”']+)[\"”']")


def _strings(node: Any, parts: PathParts = ()) -> Iterable[tuple[PathParts, str]]:
    """Every text in the document, with its path."""
    if isinstance(node, str):
        yield parts, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*parts, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, (*parts, i))


def _related(cited: str, section: str) -> bool:
    """Whether clause `cited` is `section`, inside it, or holds it (6 holds 6.1)."""
    return cited == section or cited.startswith(f"{section}.") or section.startswith(f"{cited}.")


def text_findings(doc: dict[str, Any], file: str) -> list[Finding]:
    """What a contract's texts claim about the agreement page, checked against it.

    Every clause a text cites ("clause 9", "Clause 6.3") must be one the page numbers
    (`datashare contracts show`), and the one meant: a sentence about how long records are
    kept cites Retention, not Contacts. A count in a column's description ("(5 groups)")
    must be the number of agreed values it lists (less any it names apart, in quotes, or
    counts as missing).
    """
    findings: list[Finding] = []
    titles = {number: title for number, title in SECTIONS.values()}
    titles.update({c.number: c.words for c in rule_clauses(doc).values()})
    for parts, text in _strings(doc):
        for sentence in re.split(r"(?<=[.;])\s+", " ".join(text.split())):
            lowered = sentence.lower()
            meant = [key for key, words in TOPIC_WORDS.items() if any(w in lowered for w in words)]
            if parts and parts[-1] == "retentionClause":
                meant = ["retention"]
            hint = "; ".join(f"clause {SECTIONS[k][0]} is {SECTIONS[k][1]}" for k in meant)
            for match in CLAUSE_REFERENCE.finditer(sentence):
                number = match.group(1)
                if number not in titles:
                    findings.append(Finding(file, render_path(parts), (
                        f"cites clause {number}, which the agreement page (datashare contracts "
                        f"show) does not have" + (f" ({hint})" if hint else "")
                    )))  # fmt: skip
                elif meant and not any(_related(number, SECTIONS[k][0]) for k in meant):
                    findings.append(Finding(file, render_path(parts), (
                        f"cites clause {number} ({titles[number]}), but the text is about "
                        f"something else: {hint}"
                    )))  # fmt: skip
    schema = doc.get("schema")
    table = schema[0] if isinstance(schema, list) and schema and isinstance(schema[0], dict) else {}
    props = table.get("properties") if isinstance(table.get("properties"), list) else []
    for i, prop in enumerate(props):
        if not isinstance(prop, dict) or not isinstance(prop.get("description"), str):
            continue
        match = COUNT_IN_TEXT.search(prop["description"])
        values = _valid_values(prop)
        if not match or values is None:
            continue
        named = set(QUOTED.findall(prop["description"]))
        missing = {
            str(v)
            for rule in prop.get("quality") or []
            if isinstance(rule, dict) and rule_kind(rule) == "missingValues"
            for v in (rule.get("arguments") or {}).get("missingValues") or []
        }
        counts = {len(values), len([v for v in values if v not in named]),
                  len([v for v in values if v not in missing])}  # fmt: skip
        said = int(match.group(1))
        if said not in counts:
            where = render_path(("schema", 0, "properties", i, "description"))
            findings.append(Finding(file, where, (
                f"says ({said} {match.group(2)}), but the column agrees {len(values)} values: "
                + ", ".join(values)
            )))  # fmt: skip
    return findings
