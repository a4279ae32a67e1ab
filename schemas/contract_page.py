"""A readable Markdown page of a data-sharing agreement, for people who never open YAML.

The page is a reading of the contract file, never a second source: it shows the purpose,
lawful basis, owners, schedule and retention, every column, the special-category and
pseudonymised fields, and every rule with its severity and what happens when it fails,
including the rules the pipeline builds from the column definitions themselves.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas.contract import contract_yaml
from schemas.contract_terms import iso_duration_parts, rule_kind

TYPE_WORDS = {
    "string": "text",
    "integer": "whole number",
    "number": "number",
    "boolean": "True/False",
    "date": "date",
    "timestamp": "date and time",
    "time": "time of day",
}
SEVERITY_MEANING = {
    "critical": "the whole delivery is held back",
    "major": "the delivery is published and the breach recorded",
    "minor": "informational: the breach is recorded for the provider to correct",
}
ON_FAILURE_MEANING = {
    "quarantine": "the row is held back (quarantined)",
    "keep": "the row is published and the breach raised",
}
PERIOD_WORDS = {"monthly": "Monthly", "quarterly": "Quarterly", "annual": "Yearly", "once": "Once"}
DURATION_UNITS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
LISTED_IN_FULL = 6  # longer lists of allowed values go to their own section


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return _text(value).replace("|", "\\|") or "—"


def _code(value: Any) -> str:
    text = str(value)
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _custom(block: Any) -> dict[str, Any]:
    raw = block.get("customProperties") if isinstance(block, dict) else None
    return {
        p["property"]: p.get("value")
        for p in (raw if isinstance(raw, list) else [])
        if isinstance(p, dict) and "property" in p
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def humanise_duration(value: Any) -> str:
    """`P6Y` as `6 years`; anything that is not an ISO 8601 duration is shown as it is."""
    parts = iso_duration_parts(str(value)) if value else None
    if not parts:
        return _text(value) or "not stated"
    words = []
    for key, amount in sorted(parts.items(), key=_order):
        unit = key.removesuffix("s")
        number = int(amount) if float(amount).is_integer() else amount
        words.append(f"{number} {unit}{'' if number == 1 else 's'}")
    return " ".join(words)


def _order(item: tuple[str, float]) -> int:
    return DURATION_UNITS.index(item[0])


def _month_name(period: Any) -> str:
    try:
        year, month = (int(x) for x in str(period).split("-"))
        return f"{calendar.month_name[month]} {year}"
    except (ValueError, IndexError):
        return _text(period)


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def schedule_sentence(schedule: dict[str, Any]) -> str:
    """The delivery schedule in one sentence."""
    period = schedule.get("period")
    first = _month_name(schedule.get("firstPeriod"))
    due, late = schedule.get("dueDayOfFollowingMonth"), schedule.get("lateAfterDays")
    if period == "once":
        text = f"Once, for {first}."
    else:
        span = {"monthly": "month", "quarterly": "quarter", "annual": "year"}.get(period, "period")
        text = f"{PERIOD_WORDS.get(period, _text(period))}, starting with {first}."
        if isinstance(due, int):
            text += f" Due by the {_ordinal(due)} of the month after each {span}"
            if isinstance(late, int):
                text += f"; counted late {late} day{'s' if late != 1 else ''} after that"
            text += "."
    return text


def _file_format(fmt: dict[str, Any]) -> str:
    if not fmt:
        return "not stated"
    delimiter = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}.get(
        fmt.get("delimiter"), repr(fmt.get("delimiter"))
    )
    header = "with a header row" if fmt.get("header") else "without a header row"
    kind = str(fmt.get("type", "")).upper()
    return f"{kind}, {delimiter}-separated, {header}, {fmt.get('encoding', 'encoding not stated')}"


def _valid_values(prop: dict[str, Any]) -> list[str] | None:
    allowed: list[str] | None = None
    for rule in _list(prop.get("quality")):
        if isinstance(rule, dict) and rule_kind(rule) == "invalidValues":
            values = [str(v) for v in _list(_dict(rule.get("arguments")).get("validValues"))]
            allowed = values if allowed is None else [v for v in allowed if v in values]
    return allowed


def _type_cell(prop: dict[str, Any]) -> str:
    ltype = prop.get("logicalType")
    words = TYPE_WORDS.get(ltype, _text(ltype) or "text")
    fmt = _dict(prop.get("logicalTypeOptions")).get("format")
    return f"{words} ({_code(fmt)})" if fmt else words


def _allowed_cell(prop: dict[str, Any], composite_key: bool = False) -> str:
    """What values the column may hold, in a few words."""
    parts = []
    values = _valid_values(prop)
    if values is not None:
        if len(values) <= LISTED_IN_FULL:
            parts.append("one of: " + "; ".join(values))
        else:
            parts.append(f"one of {len(values)} values (listed below)")
    options = _dict(prop.get("logicalTypeOptions"))
    low, high = options.get("minimum"), options.get("maximum")
    if low is not None and high is not None:
        parts.append(f"from {low} to {high}")
    elif low is not None:
        parts.append(f"at least {low}")
    elif high is not None:
        parts.append(f"at most {high}")
    if options.get("pattern"):
        parts.append(f"matches {_code(options['pattern'])}")
    if prop.get("primaryKey"):
        parts.append("part of the primary key" if composite_key else "primary key (unique)")
    elif prop.get("unique"):
        parts.append("unique in each delivery")
    examples = _list(prop.get("examples"))
    if examples:
        parts.append(f"e.g. {_code(examples[0])}")
    return "; ".join(parts).replace("|", "\\|") or "any"


def _header_cell(prop: dict[str, Any]) -> str:
    header = _code(prop.get("physicalName", prop.get("name")))
    previous = _list(_custom(prop).get("previousNames"))
    if previous:
        header += " (also accepted: " + ", ".join(_code(p) for p in previous) + ")"
    return header.replace("|", "\\|")


def _layout_rows(layout: dict[str, Any]) -> list[str]:
    """Table rows for the two columns a wide layout makes (they are not properties)."""
    pattern = _code(layout.get("valueColumnPattern", "?")).replace("|", "\\|")
    period_format = _code(layout.get("periodFormat", "yyyyMM"))
    value_type = layout.get("valueType", "integer")
    minimum = layout.get("valueMinimum", 0)
    allowed = f"at least {minimum}" if minimum is not None else "any"
    return [
        f"| (the header of each column matching {pattern}) | "
        f"{_code(layout.get('periodName', 'month'))} | date ({period_format}) | yes | — | "
        f"any month | {_cell(layout.get('periodDescription'))} |",
        f"| (each cell under those columns) | {_code(layout.get('valueName', 'value'))} | "
        f"{TYPE_WORDS.get(value_type, value_type)} | no | — | {allowed} | "
        f"{_cell(layout.get('valueDescription'))} |",
    ]


@dataclass(frozen=True)
class RuleRow:
    """One rule as the page lists it: its name, column(s), what it checks, and outcome."""

    name: str
    column: str  # Markdown (column names in code spans)
    what: str
    severity: str
    outcome: str
    values: str = ""  # the agreed values it names, on the page only (never in a notice)


@dataclass(frozen=True)
class Clause:
    """Where the agreement page states a rule: its clause number and what it says."""

    number: str
    words: str  # the clause's heading, or the rule and what it checks

    def text(self) -> str:
        return f"clause {self.number} ({self.words})"


def _rule_rows(table: dict[str, Any]) -> tuple[list[RuleRow], list[RuleRow]]:
    """Row rules and whole-delivery rules, in the page's order (which numbers them)."""
    rows: list[RuleRow] = []
    dataset: list[RuleRow] = []
    built_in = ("major", "quarantine")

    def row(name: str, column: str, what: str, severity: Any, on_failure: Any) -> None:
        outcome = ON_FAILURE_MEANING.get(on_failure, _text(on_failure) or "not stated")
        rows.append(RuleRow(_text(name), column, _text(what), _text(severity), outcome))

    props = [p for p in _list(table.get("properties")) if isinstance(p, dict)]
    for prop in props:
        name = prop.get("name", "?")
        column = _code(name)
        header = prop.get("physicalName", name)
        if prop.get("required"):
            row(f"{name}.required", column, f"{header} is never blank", *built_in)
        ltype = prop.get("logicalType")
        if ltype and ltype != "string":
            row(
                f"{name}.type",
                column,
                f"{header} is a valid {TYPE_WORDS.get(ltype, ltype)}",
                *built_in,
            )
        options = _dict(prop.get("logicalTypeOptions"))
        if options.get("minimum") is not None or options.get("maximum") is not None:
            row(f"{name}.range", column, f"{header} is within the agreed range", *built_in)
        if options.get("pattern"):
            row(f"{name}.pattern", column, f"{header} has the agreed form", *built_in)
        for rule in _list(prop.get("quality")):
            if not isinstance(rule, dict):
                continue
            kind = rule_kind(rule)
            on_failure = _custom(rule).get("onFailure")
            what = _text(rule.get("description"))
            if kind == "invalidValues":
                count = len(_list(_dict(rule.get("arguments")).get("validValues")))
                what = what or f"{header} is one of the {count} allowed values"
                row(rule.get("name", "?"), column, what, rule.get("severity"), on_failure)
            elif kind == "inPeriod":
                what = what or f"{header} falls in the period the delivery is for (London time)"
                row(rule.get("name", "?"), column, what, rule.get("severity"), on_failure)
            elif kind == "missingValues":
                limit = rule.get("mustBeLessOrEqualTo")
                missing = [
                    "blank" if v in (None, "") else repr(v)
                    for v in _list(_dict(rule.get("arguments")).get("missingValues"))
                ]
                what = what or f"at most {limit}% of rows have no {header}"
                # Category names of a classified column stay on the agreement page: a
                # notice cites the rule, and carries nothing that could be a value.
                values = f" (missing means: {', '.join(dict.fromkeys(missing))})" if missing else ""
                severity = rule.get("severity")
                meaning = SEVERITY_MEANING.get(severity, "") or "—"
                dataset.append(
                    RuleRow(_text(rule.get("name")), column, _text(what), _text(severity), meaning,
                            values)
                )  # fmt: skip
            else:
                row(
                    rule.get("name", "?"),
                    column,
                    f"{kind} (not enforced by the pipeline)",
                    rule.get("severity"),
                    on_failure,
                )
    pk = sorted(
        (p for p in props if p.get("primaryKey")), key=lambda p: p.get("primaryKeyPosition") or 0
    )
    if pk:
        names = [p.get("name", "?") for p in pk]
        headers = " + ".join(str(p.get("physicalName", p.get("name"))) for p in pk)
        what = f"{headers} identifies one record: no repeats in a delivery"
        row(f"{'+'.join(names)}.unique", ", ".join(_code(n) for n in names), what, *built_in)
    for prop in props:
        if prop.get("unique") and not prop.get("primaryKey"):
            name = prop.get("name", "?")
            what = f"{prop.get('physicalName', name)} does not repeat in a delivery"
            row(f"{name}.unique", _code(name), what, *built_in)
    for rule in _list(table.get("quality")):
        if not isinstance(rule, dict):
            continue
        impl = _dict(rule.get("implementation"))
        columns = ", ".join(_code(c) for c in (impl.get("column"), impl.get("reference")) if c)
        what = _text(rule.get("description")) or (
            f"{impl.get('column')} is blank or not earlier than {impl.get('reference')}"
            if rule_kind(rule) == "notBefore"
            else f"{rule_kind(rule)} (not enforced by the pipeline)"
        )
        on_failure = _custom(rule).get("onFailure")
        row(rule.get("name", "?"), columns or "—", what, rule.get("severity"), on_failure)
    layout = _dict(_custom(table).get("layout"))
    if layout.get("type") == "wide":
        value = layout.get("valueName", "value")
        what = f"each {layout.get('periodName', 'month')} column holds a whole number"
        if layout.get("valueMinimum", 0) is not None:
            what += f" of at least {layout.get('valueMinimum', 0)}"
        row(f"{value}.type", _code(value), what, *built_in)
    # Judged by the pipeline against the provider's own history (dataset_expectations).
    published = SEVERITY_MEANING["major"]
    dataset.append(
        RuleRow("dataset.volume", "—", "the number of rows is within the usual range of the "
                "previous published deliveries (no month far smaller or larger)", "major",
                published)
    )  # fmt: skip
    if any(_valid_values(p) for p in _list(table.get("properties")) if isinstance(p, dict)):
        dataset.append(
            RuleRow("dataset.mix", "columns with agreed values", "the share of each agreed "
                    "value does not move sharply against the last 12 months (a change in "
                    "recording or coding)", "minor", SEVERITY_MEANING["minor"])
        )  # fmt: skip
    return rows, dataset


# The page's clause numbers, fixed whatever a contract leaves out (a section it does not
# fill says "Not stated"), so that a notice can cite them and they mean the same everywhere.
SECTIONS = {
    "purpose": ("1", "Purpose"),
    "lawful_basis": ("2", "Lawful basis"),
    "usage": ("3", "How the data may be used"),
    "limitations": ("4", "Limitations"),
    "sensitive": ("5", "Sensitive data"),
    "delivery": ("6", "Delivery"),
    "schedule": ("6.1", "Schedule"),
    "file": ("6.2", "The file"),
    "notices": ("6.3", "Notices of breach"),
    "columns": ("7", "Columns: the agreed layout"),
    "rules": ("8", "Rules"),
    "row_rules": ("8.1", "Rules on every row"),
    "delivery_rules": ("8.2", "Rules on the whole delivery"),
    "retention": ("9", "Retention"),
    "contacts": ("10", "Contacts"),
}
# Words that say which section a sentence is about: a text that cites "clause 9" while
# speaking of how long records are kept must mean the Retention section (contract_lint).
TOPIC_WORDS = {
    "lawful_basis": ("lawful basis",),
    "sensitive": ("special-category", "special category", "pseudonymis"),
    "schedule": ("due by", "due on", "late", "schedule"),
    "file": ("manifest", "encoding", "file format"),
    "notices": ("notice", "acknowledg"),
    "columns": ("column", "header", "layout"),
    "rules": ("rule",),
    "retention": ("kept for", "are kept", "is kept", "retain", "retention", "erase"),
    "contacts": ("contact",),
}
# Breaches not of a listed rule, by the clause that states what they break.
RULE_SECTIONS = {
    "delivery.late": "schedule",
    "delivery.file_name": "file",  # one file per period, named for it
    "delivery.multiple_files": "file",
    "delivery.restated": "file",
    "delivery.periods_carried": "columns",  # the months a wide release carries
    "delivery.nothing_usable": "rules",
    "file.columns": "columns",
    "file.header": "columns",
    "file.unagreed_columns": "columns",
    "file.row_shape": "columns",
}


def heading(key: str, level: int = 2) -> str:
    """A numbered heading of the page, e.g. `## 6. Delivery` or `### 6.1 Schedule`."""
    number, title = SECTIONS[key]
    return f"{'#' * level} {number}{'.' if '.' not in number else ''} {title}"


def rule_clauses(doc: dict[str, Any]) -> dict[str, Clause]:
    """Every rule the page lists, by name, with its clause number (8.1.1, 8.2.1, ...)."""
    schema = _list(doc.get("schema"))
    table = schema[0] if schema and isinstance(schema[0], dict) else {}
    rows, dataset = _rule_rows(table)
    clauses: dict[str, Clause] = {}
    for key, listed in (("row_rules", rows), ("delivery_rules", dataset)):
        base = SECTIONS[key][0]
        for n, r in enumerate(listed, 1):
            clauses.setdefault(r.name, Clause(f"{base}.{n}", f"{r.name}: {r.what}"))
    return clauses


def clause_patterns(doc: dict[str, Any]) -> list[tuple[str, str, Clause]]:
    """How a rule's name finds its clause: (match, pattern, clause), first match wins.

    `match` is `exact` (the rule's name), `prefix` (names starting with the pattern) or
    `any`. The warehouse joins breaches to these rows, so that `governance.breaches` and a
    notice cite the same clause (`clause_for`).
    """
    listed = rule_clauses(doc)
    patterns = [("exact", name, clause) for name, clause in listed.items()]
    if "dataset.mix" in listed:
        patterns.append(("prefix", "dataset.mix.", listed["dataset.mix"]))
    patterns += [("exact", rule, Clause(*SECTIONS[key])) for rule, key in RULE_SECTIONS.items()]
    # The form of the file: format, encoding, compression, manifest, ...
    patterns += [("prefix", start, Clause(*SECTIONS["file"])) for start in ("file.", "dropzone.")]
    patterns.append(("any", "", Clause(*SECTIONS["rules"])))
    return patterns


def clause_for(doc: dict[str, Any], rule: str) -> Clause:
    """The clause of the agreement page a breach of `rule` breaks."""
    for match, pattern, clause in clause_patterns(doc):
        if (
            (match == "exact" and rule == pattern)
            or (match == "prefix" and rule.startswith(pattern))
            or match == "any"
        ):
            return clause
    raise AssertionError("the last pattern matches any rule")


def contract_document(path: Path) -> dict[str, Any]:
    """A contract file's document (read once per version of the file, and the same parse
    as the contract model's: `schemas.contract.contract_yaml`)."""
    doc = contract_yaml(str(path), Path(path).stat().st_mtime_ns)
    return doc if isinstance(doc, dict) else {}


def agreement_title(doc: dict[str, Any]) -> str:
    """The agreement's title in words, as the page heads it: `Stop and search`."""
    return str(doc.get("name", "contract")).replace("_", " ").capitalize()


def notice_response_days(agreement: dict[str, Any]) -> int | None:
    """Days the provider has to acknowledge a notice of breach, if the agreement says."""
    days = agreement.get("noticeResponseDays")
    return days if isinstance(days, int) and not isinstance(days, bool) and days > 0 else None


def file_sentence(table: dict[str, Any], fmt: dict[str, Any]) -> str:
    """The agreed file in one sentence: its name and form."""
    name = _code(table.get("physicalName", "?"))
    return f"One file per period, named like {name}: {_file_format(fmt)}."


def _delivery_section(
    table: dict[str, Any], schedule: dict[str, Any], fmt: dict[str, Any], agreement: dict
) -> list[str]:
    days = notice_response_days(agreement)
    reply = (
        f"The provider acknowledges each notice within {days} day{'s' if days != 1 else ''} "
        "of its date, and says by when each item will be corrected."
        if days
        else "_The agreement sets no period for acknowledging a notice._"
    )
    return [
        heading("delivery"),
        "",
        heading("schedule", 3),
        "",
        schedule_sentence(schedule),
        "",
        heading("file", 3),
        "",
        file_sentence(table, fmt) + " A manifest (`<file>.manifest.json`, with the number of "
        "data rows and the file's SHA-256) may be sent beside it; a file that disagrees with "
        "its manifest is held back. Links, pipes and devices are not read.",
        "",
        heading("notices", 3),
        "",
        "Each breach of these terms is recorded and sent to the provider in a notice that "
        "cites the clause broken. " + reply,
        "",
    ]


def render_page(doc: dict[str, Any], source: str = "") -> str:
    """The agreement as a Markdown page."""
    custom = _custom(doc)
    agreement = _dict(custom.get("sharingAgreement"))
    schedule = _dict(custom.get("deliverySchedule"))
    fmt = _dict(custom.get("fileFormat"))
    description = _dict(doc.get("description"))
    schema = _list(doc.get("schema"))
    table = schema[0] if schema and isinstance(schema[0], dict) else {}
    props = [p for p in _list(table.get("properties")) if isinstance(p, dict)]
    name = str(doc.get("name", "contract"))
    title = agreement_title(doc)
    owners = _dict(agreement.get("owners"))
    special = [str(s) for s in _list(agreement.get("specialCategoryFields"))]
    pseudonymised = [str(s) for s in _list(agreement.get("pseudonymisedFields"))]
    by_name = {p.get("name"): p for p in props}

    out: list[str] = [f"# {title}: data-sharing agreement", ""]
    if table.get("description"):
        out += [f"> {_text(table['description'])}", ""]
    out += [
        "| | |",
        "|---|---|",
        f"| Agreement | {_cell(agreement.get('reference'))} |",
        f"| Contract | {_code(name)} version {_cell(doc.get('version'))} "
        f"({_cell(doc.get('status'))}) |",
        f"| Provider (sends the data) | {_cell(owners.get('provider'))} |",
        f"| Recipient (receives the data) | {_cell(owners.get('recipient'))} |",
        f"| Delivered as | {_code(table.get('physicalName', '?'))}: {_cell(_file_format(fmt))} |",
        f"| Schedule | {_cell(schedule_sentence(schedule))} |",
        f"| Kept for | {_cell(humanise_duration(agreement.get('retention')))} "
        f"({_cell(agreement.get('retention'))}): clause {SECTIONS['retention'][0]} |",
        f"| Published as | {_code('curated.' + str(table.get('name', name)))} |",
        "",
        "The numbers of the sections below are the clauses that notices of breach cite.",
        "",
        heading("purpose"),
        "",
        _text(agreement.get("purpose")) or "_Not stated._",
        "",
    ]
    if description.get("purpose"):
        out += [f"What the data is for: {_text(description['purpose'])}", ""]
    out += [heading("lawful_basis"), "", _text(agreement.get("lawfulBasis")) or "_Not stated._"]
    out += ["", heading("usage"), "", _text(description.get("usage")) or "_Not stated._", ""]
    out += [heading("limitations"), "", _text(description.get("limitations")) or "_Not stated._"]
    out += ["", heading("sensitive"), ""]
    if special:
        out.append(
            "**Special-category data** (UK GDPR Article 9; handled under the condition in the "
            "lawful basis above):"
        )
        out += [
            f"- {_code(s)}, delivered as {_code(_dict(by_name.get(s)).get('physicalName', s))}"
            for s in special
        ]
    else:
        out.append("**Special-category data:** none.")
    out.append("")
    if pseudonymised:
        out.append("**Pseudonymised** (replaced by a keyed token as soon as the file lands):")
        out += [f"- {_code(p)}" for p in pseudonymised]
    else:
        out.append("**Pseudonymised fields:** none; every column is kept as delivered.")
    out.append("")
    for level, label in (("personal", "Personal data"), ("restricted", "Restricted")):
        names = [str(p.get("name")) for p in props if p.get("classification") == level]
        if names:
            out += [f"**{label}:** {', '.join(_code(n) for n in names)}.", ""]
    out.append(
        "Values of personal, special-category, restricted and pseudonymised columns never "
        "appear in breach reports."
    )
    out.append("")

    out += _delivery_section(table, schedule, fmt, agreement)
    layout = _dict(_custom(table).get("layout"))
    out += [heading("columns"), ""]
    if layout.get("type") == "wide":
        out += [
            f"The provider sends one column per period (headers matching "
            f"{_code(layout.get('valueColumnPattern', '?'))}); the published table has one row "
            f"per record and period, in columns {_code(layout.get('periodName', 'month'))} and "
            f"{_code(layout.get('valueName', 'value'))}.",
            "",
        ]
    out += [
        "| Delivered header | Published as | Type | Required | Classification | "
        "Allowed values | Description |",
        "|---|---|---|---|---|---|---|",
    ]
    composite = sum(bool(p.get("primaryKey")) for p in props) > 1
    for prop in props:
        required = "yes" if prop.get("required") else "no"
        classification = prop.get("classification") or "—"
        if prop.get("name") in special:
            classification = f"**{classification}**"
        if prop.get("name") in pseudonymised:
            classification += " (pseudonymised)"
        header = _header_cell(prop)
        out.append(
            f"| {header} | {_code(prop.get('name', '?'))} | {_type_cell(prop)} | "
            f"{required} | {classification} | {_allowed_cell(prop, composite)} | "
            f"{_cell(prop.get('description'))} |"
        )
    if layout.get("type") == "wide":
        out += _layout_rows(layout)
    out.append("")
    long_lists = [
        (p, v) for p in props if (v := _valid_values(p)) is not None and len(v) > LISTED_IN_FULL
    ]
    if long_lists:
        out += ["### Allowed values (part of clause 7)", ""]
        for prop, values in long_lists:
            out += [f"**{_code(prop.get('name'))}** ({len(values)} values):", ""]
            out += [f"- {v}" for v in values]
            out.append("")

    rows, dataset = _rule_rows(table)
    out += [
        heading("rules"),
        "",
        "Every delivery is checked against these rules. Severity says what a breach means "
        "for the delivery; for rules on each row, the last column says what happens to a row "
        "that fails.",
        "",
    ]
    out += [f"- **{s}**: {meaning}." for s, meaning in SEVERITY_MEANING.items()]
    out.append("")
    for key, listed, when in (
        ("row_rules", rows, "When a row fails"),
        ("delivery_rules", dataset, "When the delivery fails"),
    ):
        base = SECTIONS[key][0]
        out += [
            heading(key, 3),
            "",
            f"| Clause | Rule | Column | Checks that | Severity | {when} |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| {base}.{n} | {_cell(r.name)} | {r.column} | {_cell(r.what + r.values)} | "
            f"{_cell(r.severity)} | {r.outcome} |"
            for n, r in enumerate(listed, 1)
        ]
        out.append("" if listed else "_None._\n")

    out += [
        heading("retention"),
        "",
        f"Kept for {humanise_duration(agreement.get('retention'))} "
        f"({_text(agreement.get('retention')) or 'no period agreed'}). "
        + (_text(agreement.get("retentionClause")) or "_The agreement says no more._"),
        "",
    ]
    team = _dict(doc.get("team"))
    members = [m for m in _list(team.get("members")) if isinstance(m, dict)]
    if members:
        out += [heading("contacts"), "", "| Name | Role | Contact |", "|---|---|---|"]
        out += [
            f"| {_cell(m.get('name'))} | {_cell(m.get('role'))} | {_cell(m.get('username'))} |"
            for m in members
        ]
        out.append("")
    where = f" from {_code(source)}" if source else ""
    out += [
        "---",
        "",
        f"_Generated{where} by `datashare contracts show {name}`. The contract file is the "
        "agreement; this page is a reading of it._",
        "",
    ]
    return "\n".join(out)


def render_file(path: Path, source: str | None = None) -> str:
    """The Markdown page for one contract file."""
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a contract (the YAML is not a mapping)")
    return render_page(doc, source if source is not None else str(path))
