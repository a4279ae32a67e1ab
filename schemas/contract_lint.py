"""Check data contracts against ODCS v3.1.0 and against our sharing-agreement conventions.

Two layers. The official ODCS v3.1.0 JSON schema (draft 2019-09, shipped by the
`open-data-contract-standard` package and loaded from it at run time, never copied here)
catches structural faults and typos at any depth. Our own rules (data_contracts/README.md)
catch what a data-sharing agreement needs and ODCS leaves out: the agreement terms, the
special-category and pseudonymised fields, owners on both sides, the delivery schedule and
rules the pipeline can actually enforce.

Every finding carries the file and the path to the fault in ODCS notation, for example
`data_contracts/x.yaml: schema[0].properties[3].logicalTypeOption: unknown field (did you
mean logicalTypeOptions?)`.
"""

from __future__ import annotations

import codecs
import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from jsonschema import Draft201909Validator
from jsonschema.exceptions import ValidationError

from schemas.contract import (
    SEVERITIES,
    ContractError,
    LogicalType,
    OnFailure,
    Period,
    _java_to_strptime,
    contracts_dir,
    parse_contract,
)

ODCS_API_VERSION = "v3.1.0"
ODCS_SCHEMA_PACKAGE = "open_data_contract_standard"
ODCS_SCHEMA_RESOURCE = "schema.json"

Level = Literal["error", "warning"]
PathParts = tuple[str | int, ...]

LOGICAL_TYPES: tuple[str, ...] = get_args(LogicalType)
ON_FAILURE: tuple[str, ...] = get_args(OnFailure)
PERIODS: tuple[str, ...] = get_args(Period)
CLASSIFICATIONS = ("public", "internal", "restricted", "personal", "special-category")
PERSONAL_CLASSES = ("personal", "special-category")
STATUSES = ("proposed", "draft", "active", "deprecated", "retired")
OWNER_ROLES = ("provider owner", "recipient owner")

TOP_CUSTOM = ("sharingAgreement", "deliverySchedule", "fileFormat")
# Optional terms: what share of a delivery must pass to publish it, and over how many values
# a category-mix change is judged.
OPTIONAL_CUSTOM = ("minPublishableShare", "mixMinimumValues")
FILES_PER_PERIOD = ("one", "parts")
AGREEMENT_TEXT_KEYS = ("reference", "purpose", "lawfulBasis", "retention", "retentionClause")
AGREEMENT_LIST_KEYS = ("specialCategoryFields", "pseudonymisedFields")
# Days the provider has to acknowledge a notice of breach (the notices' reply-by date).
NOTICE_RESPONSE_KEY = "noticeResponseDays"
AGREEMENT_KEYS = (*AGREEMENT_TEXT_KEYS, *AGREEMENT_LIST_KEYS, "owners", NOTICE_RESPONSE_KEY)
OWNER_KEYS = ("provider", "recipient")
SCHEDULE_KEYS = (
    "period", "firstPeriod", "dueDayOfFollowingMonth", "lateAfterDays", "lateChecksFrom",
    "filesPerPeriod",
)  # fmt: skip
FILE_FORMAT_KEYS = (
    "type",
    "delimiter",
    "header",
    "encoding",
    "maxDecompressedBytes",
    "maxCompressionRatio",
)
TABLE_CUSTOM = ("layout", "snapshots")
# snapshots: records re-sent as they change; the warehouse's <contract>_latest view keeps the
# latest snapshot of each record (by key, ordered by snapshotColumn).
SNAPSHOTS_KEYS = ("key", "snapshotColumn")
# Columns every curated row carries besides the contract's own (the delivery's month, text).
LINEAGE_COLUMNS = ("_period",)
LAYOUT_KEYS = (
    "type", "valueColumnPattern", "periodFormat", "periodName", "valueName", "valueType",
    "valueMinimum", "periodDescription", "valueDescription", "agreedPeriods",
)  # fmt: skip
AGREED_PERIODS_KEYS = ("count", "endsPeriodsBefore")
COLUMN_CUSTOM = ("previousNames",)
RULE_CUSTOM = ("onFailure",)
DATE_TYPES = ("date", "timestamp", "time")
# logicalTypeOptions the pipeline acts on; `timezone` only documents what `format` says.
ENFORCED_OPTIONS = ("format", "defaultTimezone", "timezone", "minimum", "maximum", "pattern")
ORDERED_TYPES = ("date", "timestamp", "time", "number", "integer")

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
)
YEAR_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
ISO_DURATION = re.compile(
    r"^P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$"
)
# A lawful basis for personal data (UK GDPR Art. 6, or DPA 2018 Part 3 for law enforcement)
# and a condition for special-category data (Art. 9 / Schedule 1, or Part 3 sensitive
# processing). Wording varies, so only the citation is looked for.
ARTICLE_6 = re.compile(r"article\s*6|art\.?\s*6|6\s*\(\s*1\s*\)|part\s*3", re.I)
ARTICLE_9 = re.compile(
    r"article\s*9|art\.?\s*9|9\s*\(\s*2\s*\)|schedule\s*1|part\s*3|section\s*35|s\.?\s*35", re.I
)
# Curated names that usually hold personal or special-category data; a DPO expects them
# classified. Heuristic, so only a warning.
LOOKS_PERSONAL = re.compile(
    r"(^|_)(first_?name|forename|surname|last_name|full_name|email|e_mail|phone|telephone|"
    r"mobile|address|postcode|post_code|date_of_birth|dob|nhs_number|ni_number|"
    r"national_insurance|passport|driving_licen[cs]e|pnc_id|cro_number|warrant_number|"
    r"collar_number|shoulder_number|ip_address|vehicle_registration|vrm)($|_)"
)
LOOKS_SPECIAL = re.compile(
    r"(^|_)(ethnic\w*|race|racial|religio\w*|belief|sexual\w*|sexuality|health|disab\w*|"
    r"biometric|genetic|political|trade_union|mental_health)($|_)"
)


@dataclass(frozen=True)
class Finding:
    """One fault in a contract file: where it is and what is wrong, in plain words."""

    file: str
    path: str
    message: str
    level: Level = "error"

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        prefix = "warning: " if self.level == "warning" else ""
        return f"{where}: {prefix}{self.message}"


def render_path(parts: Iterable[str | int]) -> str:
    """`("schema", 0, "properties", 3, "name")` as `schema[0].properties[3].name`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    options = [o for o in options if isinstance(o, str)]
    for option in options:
        if option.lower() == word.lower():
            return f" (did you mean {option}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the official ODCS schema -------------------------------------------------------------


@cache
def odcs_schema() -> dict[str, Any]:
    """The official ODCS v3.1.0 JSON schema, as shipped by `open-data-contract-standard`."""
    try:
        text = resources.files(ODCS_SCHEMA_PACKAGE).joinpath(ODCS_SCHEMA_RESOURCE).read_text()
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the ODCS JSON schema comes from the package open-data-contract-standard==3.1.2; "
            "install the project's dependencies (pip install -e .)"
        ) from exc
    schema = json.loads(text)
    shipped = schema.get("properties", {}).get("apiVersion", {}).get("default")
    if shipped != ODCS_API_VERSION:
        raise RuntimeError(
            f"the installed open-data-contract-standard ships the ODCS {shipped} schema, "
            f"but our contracts are {ODCS_API_VERSION}: pin open-data-contract-standard==3.1.2"
        )
    return schema


@cache
def odcs_validator() -> Draft201909Validator:
    """A draft 2019-09 validator (it honours `unevaluatedProperties`, so deep typos show)."""
    return Draft201909Validator(odcs_schema())


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _declared(node: Any, root: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str]:
    """Property names a schema node accepts, through $ref, allOf/anyOf/oneOf and if/then."""
    if not isinstance(node, dict):
        return set()
    names = set(node.get("properties") or {})
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        names |= _declared(_resolve(ref, root), root, seen | {ref})
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key) or []:
            names |= _declared(sub, root, seen)
    for key in ("then", "else"):
        names |= _declared(node.get(key), root, seen)
    return names


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    groups: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        groups.setdefault(sub.relative_schema_path[0], []).append(sub)
    return list(groups.values())


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For oneOf/anyOf, the errors of the alternative that got furthest into the document."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    branches = _branches(error)

    def depth(errors: list[ValidationError]) -> int:
        return max(len(e.absolute_path) for e in errors)

    best = max(branches, key=lambda errors: (depth(errors), -len(errors)))
    if depth(best) <= len(error.absolute_path):
        return [error]
    return [leaf for e in best for leaf in _leaves(e)]


_TYPE_WORDS = {
    "boolean": "true or false",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "object": "a mapping of fields",
    "null": "empty",
}


def _schema_messages(error: ValidationError) -> list[tuple[PathParts, str]]:
    """Plain-words messages for one schema error, each with the path it is about."""
    path: PathParts = tuple(error.absolute_path)
    instance = error.instance
    validator = error.validator
    if validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        instance, dict
    ):
        known = _declared(error.schema, odcs_schema())
        unknown = [k for k in instance if k not in known]
        if not unknown:
            found = re.findall(r"'([^']+)'", error.message.split("(", 1)[-1])
            unknown = [k for k in found if k in instance]
        return [
            ((*path, name), f"unknown field{_did_you_mean(name, known)}") for name in unknown
        ] or [(path, error.message)]
    if validator == "required" and isinstance(instance, dict):
        return [
            ((*path, name), "required field is missing")
            for name in error.validator_value
            if name not in instance
        ]
    if validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        hint = _did_you_mean(str(instance), [str(v) for v in error.validator_value])
        return [(path, f"{_short(instance)} is not allowed; expected one of: {allowed}{hint}")]
    if validator == "type":
        wanted = error.validator_value
        wanted = wanted if isinstance(wanted, list) else [wanted]
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        if isinstance(instance, date):
            return [
                (path, f"must be {words}, not a YAML date: quote it ({instance.isoformat()!r})")
            ]
        return [(path, f"must be {words}, not {_short(instance)}")]
    if validator in ("oneOf", "anyOf"):
        branches = _branches(error)
        if branches and all(all(e.validator == "required" for e in b) for b in branches):
            names = sorted({n for b in branches for e in b for n in e.validator_value})
            return [(path, f"needs one of: {', '.join(names)}")]
        if not error.context and isinstance(instance, dict):
            options = error.validator_value if isinstance(error.validator_value, list) else []
            singles = [
                o["required"][0]
                for o in options
                if isinstance(o, dict) and len(o.get("required") or []) == 1
            ]
            present = [n for n in singles if n in instance]
            if len(present) > 1:
                return [(path, f"use only one of: {', '.join(present)}")]
            return [(path, "matches more than one of the forms ODCS allows here")]
        forms = "; ".join(sorted({b[0].message[:80] for b in branches}))
        return [(path, f"does not match any form ODCS allows here ({forms})")]
    message = error.message
    if len(message) > 200:
        message = f"{validator} check failed ({_short(error.validator_value, 80)})"
    return [(path, message)]


def _sort_key(parts: PathParts) -> tuple[tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in parts)


def odcs_findings(doc: Any, file: str) -> list[Finding]:
    """Faults against the official ODCS v3.1.0 JSON schema, deduplicated, in path order."""
    seen: set[tuple[PathParts, str]] = set()
    found: list[tuple[PathParts, str]] = []
    for error in odcs_validator().iter_errors(doc):
        for leaf in _leaves(error):
            for parts, message in _schema_messages(leaf):
                if (parts, message) not in seen:
                    seen.add((parts, message))
                    found.append((parts, message))
    found.sort(key=lambda item: _sort_key(item[0]))
    return [Finding(file, render_path(parts), message) for parts, message in found]


# --- reading the YAML ---------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that records duplicate keys instead of silently keeping the last one."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                self.duplicates.append(
                    f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the "
                    "same block; YAML keeps only the last one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_contract_yaml(path: Path) -> tuple[Any, list[str]]:
    """The parsed YAML document and the duplicate-key problems found while reading it."""
    with open(path, encoding="utf-8") as fh:
        loader = _StrictLoader(fh)
        try:
            return loader.get_single_data(), loader.duplicates
        finally:
            loader.dispose()


# --- our own rules ------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _custom_entries(block: Any) -> list[tuple[int, str, Any]]:
    entries = []
    raw = block.get("customProperties") if isinstance(block, dict) else None
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(item, dict) and isinstance(item.get("property"), str):
            entries.append((i, item["property"], item.get("value")))
    return entries


def iso_duration_parts(text: str) -> dict[str, float] | None:
    """The components of an ISO 8601 duration (`P6Y` -> {"years": 6}), or None if invalid."""
    match = ISO_DURATION.match(text)
    if not match:
        return None
    names = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
    return {n: float(v.replace(",", ".")) for n, v in zip(names, match.groups(), strict=True) if v}


def _layout_of(table: dict[str, Any]) -> dict[str, Any]:
    for _, key, value in _custom_entries(table):
        if key == "layout" and isinstance(value, dict):
            return value
    return {}


def rule_kind(rule: dict[str, Any]) -> str:
    """What a quality rule is to the pipeline: `invalidValues`, `missingValues`, `inPeriod`,
    `notBefore`, or something it does not enforce (described)."""
    metric = rule.get("metric")
    if rule.get("type") == "custom" or (rule.get("engine") and not metric):
        impl = rule.get("implementation")
        name = impl.get("rule") if isinstance(impl, dict) else impl
        if rule.get("engine") == "datashare":
            return str(name)
        return f"custom rule on engine {rule.get('engine')!r}"
    if metric:
        return str(metric)
    return f"type:{rule.get('type', 'library')}"


ROW_RULE_KINDS = ("invalidValues", "inPeriod", "notBefore")
COLUMN_RULE_KINDS = ("invalidValues", "missingValues", "inPeriod")
TABLE_RULE_KINDS = ("notBefore",)
TEXT_RULE = "type:text"


class _Checker:
    """Collects findings for one contract document against our conventions."""

    def __init__(self, doc: dict[str, Any], path: Path, file: str) -> None:
        self.doc = doc
        self.path = path
        self.file = file
        self.findings: list[Finding] = []
        self.columns: dict[str, tuple[int, dict[str, Any]]] = {}
        self.rule_names: dict[str, PathParts] = {}

    def error(self, parts: PathParts, message: str) -> None:
        self.findings.append(Finding(self.file, render_path(parts), message))

    def warn(self, parts: PathParts, message: str) -> None:
        self.findings.append(Finding(self.file, render_path(parts), message, "warning"))

    def unknown_keys(self, block: dict[str, Any], parts: PathParts, known: Sequence[str]) -> None:
        for key in block:
            if key not in known:
                self.error(
                    (*parts, key),
                    f"unknown field{_did_you_mean(str(key), known)}; expected: {', '.join(known)}",
                )

    def run(self) -> list[Finding]:
        self.top_level()
        self.team()
        table = self.table()
        if table is not None:
            self.columns_and_rules(table)
        custom = self.top_custom()
        self.agreement(custom.get("sharingAgreement"))
        self.schedule(custom.get("deliverySchedule"))
        self.file_format(custom.get("fileFormat"))
        self.publishing_terms(custom)
        return self.findings

    # top level -----------------------------------------------------------------------------

    def top_level(self) -> None:
        doc = self.doc
        if doc.get("apiVersion") != ODCS_API_VERSION:
            self.error(("apiVersion",), f"our contracts use ODCS {ODCS_API_VERSION}")
        name = doc.get("name")
        if _blank(name) or not isinstance(name, str):
            self.error(("name",), "the contract needs a name (the file is <name>.yaml)")
        else:
            if not SNAKE_CASE.match(name):
                self.error(("name",), f"{name!r} is not snake_case (lower case, digits, _)")
            if self.path.stem != name:
                self.error(
                    ("name",),
                    f"the file is {self.path.name} but name is {name!r}: "
                    f"rename the file to {name}.yaml or fix the name",
                )
            expected = f"urn:datashare:mps-mopac:{name}"
            if doc.get("id") != expected:
                self.error(
                    ("id",), f"must be {expected} (from the name), not {_short(doc.get('id'))}"
                )
        version = doc.get("version")
        if not isinstance(version, str) or not SEMVER.match(version):
            self.error(
                ("version",), f"must be a semantic version such as 1.0.0, not {_short(version)}"
            )
        if doc.get("status") not in STATUSES:
            self.error(
                ("status",),
                f"{_short(doc.get('status'))} is not a status we use; "
                f"one of: {', '.join(STATUSES)}",
            )
        description = doc.get("description")
        description = description if isinstance(description, dict) else {}
        for key in ("purpose", "usage", "limitations"):
            if _blank(description.get(key)):
                self.error(
                    ("description", key), "missing or empty; people read it on the agreement page"
                )

    def team(self) -> None:
        team = self.doc.get("team")
        if isinstance(team, list):
            self.error(
                ("team",),
                "use the team object (name, members); the list form is deprecated in ODCS 3.1",
            )
            return
        if not isinstance(team, dict):
            self.error(
                ("team",), "missing: owners on both sides (provider and recipient) are required"
            )
            return
        if _blank(team.get("name")):
            self.error(("team", "name"), "missing: it becomes the Dagster owner team:<name>")
        members = team.get("members") if isinstance(team.get("members"), list) else []
        roles = [str(m.get("role") or "").strip().lower() for m in members if isinstance(m, dict)]
        for role in OWNER_ROLES:
            if role not in roles:
                self.error(
                    ("team", "members"),
                    f"no member has role {role!r}: the agreement needs an owner on both sides",
                )
        if "pipeline owner" not in roles:
            self.warn(("team", "members"), "no member has role 'pipeline owner'")

    def top_custom(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        self.custom_index: dict[str, int] = {}
        for i, prop, value in _custom_entries(self.doc):
            if prop in found:
                self.error(
                    ("customProperties", i, "property"),
                    f"{prop} appears twice; only the last one would count",
                )
            elif prop not in TOP_CUSTOM + OPTIONAL_CUSTOM:
                known = TOP_CUSTOM + OPTIONAL_CUSTOM
                self.error(
                    ("customProperties", i, "property"),
                    f"unknown custom property {prop!r}{_did_you_mean(prop, known)}; "
                    f"expected: {', '.join(known)}",
                )
            found[prop] = value
            self.custom_index.setdefault(prop, i)
        for prop in TOP_CUSTOM:
            if prop not in found:
                self.error(
                    ("customProperties",), f"{prop} is missing (see data_contracts/README.md)"
                )
        return found

    def _custom_path(self, prop: str) -> PathParts:
        return ("customProperties", self.custom_index.get(prop, 0), "value")

    # sharing agreement -------------------------------------------------------------------

    def agreement(self, agreement: Any) -> None:
        if agreement is None:
            return
        base = self._custom_path("sharingAgreement")
        if not isinstance(agreement, dict):
            self.error(base, "sharingAgreement must be a mapping of the agreement terms")
            return
        self.unknown_keys(agreement, base, AGREEMENT_KEYS)
        for key in AGREEMENT_TEXT_KEYS:
            value = agreement.get(key)
            if _blank(value) or not isinstance(value, str):
                self.error((*base, key), f"sharingAgreement.{key} is missing or empty")
        retention = agreement.get("retention")
        if isinstance(retention, str) and retention.strip():
            parts = iso_duration_parts(retention.strip())
            if parts is None:
                self.error(
                    (*base, "retention"),
                    f"{retention!r} is not an ISO 8601 duration (for example P6Y, P18M, P90D)",
                )
            elif not any(parts.values()):
                self.error((*base, "retention"), "retention must be longer than zero")
        self.notice_response(agreement, base)
        listed: dict[str, list[str]] = {}
        for key in AGREEMENT_LIST_KEYS:
            value = agreement.get(key)
            if key not in agreement:
                self.error(
                    (*base, key),
                    f"sharingAgreement.{key} is missing; write [] when there are none",
                )
                continue
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.error((*base, key), "must be a list of curated column names")
                continue
            listed[key] = value
            for j, column in enumerate(value):
                if column in value[:j]:
                    self.error((*base, key, j), f"{column!r} is listed twice")
                elif column not in self.columns:
                    self.error(
                        (*base, key, j),
                        f"no column is named {column!r}"
                        f"{_did_you_mean(column, self.columns)}; use curated column names",
                    )
        self.owners(agreement.get("owners"), (*base, "owners"))
        self.special_and_pseudonymised(listed, base)
        self.lawful_basis(agreement.get("lawfulBasis"), listed, (*base, "lawfulBasis"))

    def notice_response(self, agreement: dict[str, Any], base: PathParts) -> None:
        """`noticeResponseDays`: a whole number of days (1 to 365); a notice of breach is
        to be acknowledged within it. Without it, notices carry no reply-by date."""
        parts = (*base, NOTICE_RESPONSE_KEY)
        if NOTICE_RESPONSE_KEY not in agreement:
            self.warn(
                parts,
                f"sharingAgreement.{NOTICE_RESPONSE_KEY} is missing: notices of breach will "
                "ask for a reply with no date to reply by",
            )
            return
        days = agreement[NOTICE_RESPONSE_KEY]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
            self.error(parts, f"must be a whole number of days from 1 to 365, not {days!r}")

    def owners(self, owners: Any, parts: PathParts) -> None:
        if not isinstance(owners, dict):
            self.error(parts, "sharingAgreement.owners needs provider and recipient")
            return
        self.unknown_keys(owners, parts, OWNER_KEYS)
        for side in OWNER_KEYS:
            if _blank(owners.get(side)):
                self.error((*parts, side), f"the {side} owner is missing or empty")
        team = self.doc.get("team")
        members = team.get("members") if isinstance(team, dict) else None
        if not isinstance(members, list):
            return
        for side in OWNER_KEYS:
            owner = owners.get(side)
            if _blank(owner):
                continue
            names = {
                str(m.get(k))
                for m in members
                if isinstance(m, dict)
                and str(m.get("role") or "").strip().lower() == f"{side} owner"
                for k in ("name", "username")
            }
            if names and owner not in names:
                self.warn(
                    (*parts, side),
                    f"{owner!r} is not the name of the team member with role '{side} owner'",
                )

    def special_and_pseudonymised(self, listed: dict[str, list[str]], base: PathParts) -> None:
        special = listed.get("specialCategoryFields")
        if special is not None:
            for name in special:
                if name in self.columns:
                    i, prop = self.columns[name]
                    if prop.get("classification") != "special-category":
                        self.error(
                            ("schema", 0, "properties", i, "classification"),
                            f"column {name!r} is listed in sharingAgreement.specialCategoryFields "
                            f"but classified {_short(prop.get('classification'))}; classify it "
                            "special-category",
                        )
            for name, (i, prop) in self.columns.items():
                if prop.get("classification") == "special-category" and name not in special:
                    self.error(
                        ("schema", 0, "properties", i, "classification"),
                        f"column {name!r} is classified special-category but not listed in "
                        "sharingAgreement.specialCategoryFields",
                    )
        for j, name in enumerate(listed.get("pseudonymisedFields") or []):
            if name not in self.columns:
                continue
            i, prop = self.columns[name]
            if prop.get("classification") not in PERSONAL_CLASSES:
                self.error(
                    (*base, "pseudonymisedFields", j),
                    f"column {name!r} is pseudonymised, so it is personal data: classify it "
                    "personal or special-category",
                )
            if prop.get("logicalType") != "string":
                self.error(
                    (*base, "pseudonymisedFields", j),
                    f"column {name!r} is replaced by a keyed token on landing, so its "
                    f"logicalType must be string, not {_short(prop.get('logicalType'))}",
                )

    def lawful_basis(self, basis: Any, listed: dict[str, list[str]], parts: PathParts) -> None:
        if not isinstance(basis, str) or not basis.strip():
            return
        classes = {p.get("classification") for _, p in self.columns.values()}
        personal = bool(classes & set(PERSONAL_CLASSES)) or bool(listed.get("pseudonymisedFields"))
        special = "special-category" in classes or bool(listed.get("specialCategoryFields"))
        if personal and not ARTICLE_6.search(basis):
            self.error(
                parts,
                "the extract holds personal data, but the lawful basis cites no UK GDPR "
                "Article 6 basis (or DPA 2018 Part 3)",
            )
        if special and not ARTICLE_9.search(basis):
            self.error(
                parts,
                "the extract holds special-category data, but the lawful basis cites no "
                "Article 9 condition (with its DPA 2018 Schedule 1 condition, or Part 3 "
                "sensitive processing)",
            )
        tags = self.doc.get("tags")
        if personal and isinstance(tags, list) and "personal-data" not in tags:
            self.warn(("tags",), "the extract holds personal data; tag it personal-data")

    # schedule and file format ------------------------------------------------------------

    def schedule(self, schedule: Any) -> None:
        if schedule is None:
            return
        base = self._custom_path("deliverySchedule")
        if not isinstance(schedule, dict):
            self.error(base, "deliverySchedule must be a mapping")
            return
        self.unknown_keys(schedule, base, SCHEDULE_KEYS)
        period = schedule.get("period")
        if period not in PERIODS:
            self.error(
                (*base, "period"),
                f"{_short(period)} is not a delivery period; one of: {', '.join(PERIODS)}"
                f"{_did_you_mean(str(period), PERIODS)}",
            )
        first = schedule.get("firstPeriod")
        if not isinstance(first, str) or not YEAR_MONTH.match(first):
            self.error(
                (*base, "firstPeriod"),
                f"must be a month as text YYYY-MM (quote it), not {_short(first)}",
            )
        due = schedule.get("dueDayOfFollowingMonth")
        if not _is_int(due) or not 1 <= due <= 28:
            self.error(
                (*base, "dueDayOfFollowingMonth"),
                f"must be a day from 1 to 28 (every month has it), not {_short(due)}",
            )
        late = schedule.get("lateAfterDays")
        if not _is_int(late) or late < 0:
            self.error(
                (*base, "lateAfterDays"), f"must be a whole number of days >= 0, not {_short(late)}"
            )
        files = schedule.get("filesPerPeriod", "one")
        if files not in FILES_PER_PERIOD:
            self.error(
                (*base, "filesPerPeriod"),
                f"must be one (a second file replaces the first, with a breach) or parts "
                f"(every file of the period is part of its delivery), not {_short(files)}",
            )

    def publishing_terms(self, custom: dict[str, Any]) -> None:
        """minPublishableShare (a share from 0 to 1) and mixMinimumValues (a count >= 1)."""
        share = custom.get("minPublishableShare")
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
        ):
            self.error(
                self._custom_path("minPublishableShare"),
                f"must be a share of the rows from 0 to 1 (0.5 is half), not {_short(share)}",
            )
        least = custom.get("mixMinimumValues")
        if least is not None and (not _is_int(least) or least < 1):
            self.error(
                self._custom_path("mixMinimumValues"),
                f"must be a whole number of values >= 1, not {_short(least)}",
            )

    def file_format(self, fmt: Any) -> None:
        if fmt is None:
            return
        base = self._custom_path("fileFormat")
        if not isinstance(fmt, dict):
            self.error(base, "fileFormat must be a mapping")
            return
        self.unknown_keys(fmt, base, FILE_FORMAT_KEYS)
        if fmt.get("type") != "csv":
            self.error(
                (*base, "type"), f"the pipeline reads csv only, not {_short(fmt.get('type'))}"
            )
        delimiter = fmt.get("delimiter")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            self.error((*base, "delimiter"), f"must be one character, not {_short(delimiter)}")
        if fmt.get("header") is not True:
            self.error((*base, "header"), "must be true: columns are matched by their header")
        encoding = fmt.get("encoding")
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            self.error((*base, "encoding"), f"{_short(encoding)} is not a known text encoding")
        limit = fmt.get("maxDecompressedBytes")
        if limit is not None and (not _is_int(limit) or limit <= 0):
            self.error(
                (*base, "maxDecompressedBytes"),
                f"must be a whole number of bytes > 0, not {_short(limit)}",
            )
        ratio = fmt.get("maxCompressionRatio")
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 1
        ):
            self.error(
                (*base, "maxCompressionRatio"), f"must be a number >= 1, not {_short(ratio)}"
            )

    # the table and its columns -----------------------------------------------------------

    def table(self) -> dict[str, Any] | None:
        schema = self.doc.get("schema")
        if not isinstance(schema, list) or not schema or not isinstance(schema[0], dict):
            self.error(("schema",), "the contract needs one table in schema[0]")
            return None
        for i in range(1, len(schema)):
            self.error(("schema", i), "one table per contract: the pipeline reads only schema[0]")
        table = schema[0]
        name = table.get("name")
        if not isinstance(name, str) or not SNAKE_CASE.match(name):
            self.error(
                ("schema", 0, "name"),
                f"the curated table name must be snake_case, not {_short(name)}",
            )
        if _blank(table.get("physicalName")):
            self.error(("schema", 0, "physicalName"), "missing: the delivered file name pattern")
        if _blank(table.get("description")):
            self.warn(("schema", 0, "description"), "missing: say what one row is")
        props = table.get("properties")
        if not isinstance(props, list) or not props:
            self.error(("schema", 0, "properties"), "the table needs its columns")
            table = {**table, "properties": []}
        return table

    def columns_and_rules(self, table: dict[str, Any]) -> None:
        props = [p if isinstance(p, dict) else {} for p in table["properties"]]
        headers: dict[str, int] = {}
        for i, prop in enumerate(props):
            name = prop.get("name")
            if not isinstance(name, str) or not name:
                continue
            if name in self.columns:
                self.error(
                    ("schema", 0, "properties", i, "name"),
                    f"curated name {name!r} is already used by "
                    f"schema[0].properties[{self.columns[name][0]}]",
                )
            else:
                self.columns[name] = (i, prop)
            if not SNAKE_CASE.match(name):
                self.error(
                    ("schema", 0, "properties", i, "name"),
                    f"curated name {name!r} must be snake_case (lower case, digits, _)",
                )
        layout = _layout_of(table)
        made = set()
        if layout.get("type") == "wide":
            made = {layout.get("periodName", "month"), layout.get("valueName", "value")}
        for i, prop in enumerate(props):
            physical = prop.get("physicalName")
            if prop.get("name") in made:
                self.error(
                    ("schema", 0, "properties", i),
                    f"column {prop.get('name')!r} is made by the wide layout, and the pipeline "
                    "reads every property as a delivered column: describe it in the layout "
                    "(periodDescription / valueDescription) instead",
                )
            elif _blank(physical):
                self.error(
                    ("schema", 0, "properties", i, "physicalName"),
                    "missing: the header exactly as delivered",
                )
            elif physical in headers:
                self.error(
                    ("schema", 0, "properties", i, "physicalName"),
                    f"header {physical!r} is already used by "
                    f"schema[0].properties[{headers[physical]}]",
                )
            else:
                headers[physical] = i
        for i, prop in enumerate(props):
            self.column(i, prop, headers)
        self.primary_key(props)
        self.table_custom(table)
        self.table_rules(table)
        self.pipeline_rule_names_unique(table, props)

    def column(self, i: int, prop: dict[str, Any], headers: dict[str, int]) -> None:
        base: PathParts = ("schema", 0, "properties", i)
        name = prop.get("name") or f"#{i}"
        ltype = prop.get("logicalType")
        if ltype not in LOGICAL_TYPES:
            self.error(
                (*base, "logicalType"),
                f"column {name!r}: the pipeline reads {', '.join(LOGICAL_TYPES)}, "
                f"not {_short(ltype)}",
            )
        options = prop.get("logicalTypeOptions")
        options = options if isinstance(options, dict) else {}
        if ltype in DATE_TYPES:
            fmt = options.get("format")
            if _blank(fmt):
                self.error(
                    (*base, "logicalTypeOptions", "format"),
                    f"column {name!r}: a {ltype} needs its delivered format (JDK letters, "
                    "e.g. yyyy-MM-dd)",
                )
            else:
                try:
                    _java_to_strptime(str(fmt))
                except ContractError as exc:
                    self.error((*base, "logicalTypeOptions", "format"), f"column {name!r}: {exc}")
            zone = options.get("defaultTimezone")
            if zone is not None:
                try:
                    ZoneInfo(str(zone))
                except (ZoneInfoNotFoundError, ValueError):
                    self.error(
                        (*base, "logicalTypeOptions", "defaultTimezone"),
                        f"{_short(zone)} is not a time zone name such as Europe/London",
                    )
        low, high = options.get("minimum"), options.get("maximum")
        if (low is not None or high is not None) and ltype not in ("number", "integer"):
            self.error(
                (*base, "logicalTypeOptions"),
                f"column {name!r}: the pipeline checks minimum/maximum on number and integer "
                "columns only",
            )
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            self.error(
                (*base, "logicalTypeOptions"),
                f"column {name!r}: minimum {low} is above maximum {high}",
            )
        for key in options:
            if key not in ENFORCED_OPTIONS:
                self.warn(
                    (*base, "logicalTypeOptions", key),
                    f"column {name!r}: the pipeline does not check {key}; say it in the "
                    "description, or ask for the check to be added",
                )
        pattern = options.get("pattern")
        if pattern is not None:
            try:
                re.compile(str(pattern))
            except re.error as exc:
                self.error(
                    (*base, "logicalTypeOptions", "pattern"),
                    f"not a valid regular expression: {exc}",
                )
                pattern = None
        classification = prop.get("classification")
        if classification is not None and classification not in CLASSIFICATIONS:
            self.error(
                (*base, "classification"),
                f"{_short(classification)} is not one of: {', '.join(CLASSIFICATIONS)}"
                f"{_did_you_mean(str(classification), CLASSIFICATIONS)}",
            )
        # An explicit classification is a decision (aggregate counts by ethnic group are
        # public); only an unclassified column, or ethnicity merely "personal", is queried.
        if isinstance(name, str):
            if LOOKS_SPECIAL.search(name) and classification in (None, "personal"):
                self.warn(
                    (*base, "classification"),
                    f"column {name!r} looks like special-category data but is "
                    f"{classification or 'unclassified'}; is that right?",
                )
            elif LOOKS_PERSONAL.search(name) and classification is None:
                self.warn(
                    (*base, "classification"),
                    f"column {name!r} looks like personal data but is unclassified",
                )
        valid = self.column_rules(i, prop, name, ltype)
        self.example(i, prop, name, ltype, valid, pattern, low, high)
        self.column_custom(i, prop, headers)

    def example(
        self,
        i: int,
        prop: dict[str, Any],
        name: str,
        ltype: Any,
        valid: set[str] | None,
        pattern: Any,
        low: Any,
        high: Any,
    ) -> None:
        examples = prop.get("examples")
        if not isinstance(examples, list) or not examples:
            return
        example = examples[0]
        text = str(example)
        parts: PathParts = ("schema", 0, "properties", i, "examples", 0)
        problem = None
        if valid is not None and text not in valid:
            problem = "is not one of the allowed values"
        elif pattern is not None and not re.fullmatch(str(pattern), text):
            problem = "does not match the agreed pattern"
        elif ltype in ("number", "integer"):
            try:
                number = float(text) if ltype == "number" else int(text)
            except ValueError:
                problem = f"is not a valid {ltype}"
            else:
                if (isinstance(low, int | float) and number < low) or (
                    isinstance(high, int | float) and number > high
                ):
                    problem = "is outside the agreed range"
        elif ltype == "boolean" and text not in ("True", "False"):
            problem = "is not True or False as published"
        if problem:
            self.error(
                parts, f"column {name!r}: the example shown to people {_short(example)} {problem}"
            )

    def column_custom(self, i: int, prop: dict[str, Any], headers: dict[str, int]) -> None:
        base: PathParts = ("schema", 0, "properties", i, "customProperties")
        for j, key, value in _custom_entries(prop):
            if key not in COLUMN_CUSTOM:
                self.error(
                    (*base, j, "property"),
                    f"unknown custom property {key!r}{_did_you_mean(key, COLUMN_CUSTOM)}; "
                    f"expected: {', '.join(COLUMN_CUSTOM)}",
                )
                continue
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.strip() for v in value
            ):
                self.error((*base, j, "value"), "previousNames must be a list of headers")
                continue
            for k, old in enumerate(value):
                where = (*base, j, "value", k)
                if old == prop.get("physicalName"):
                    self.error(where, f"{old!r} is this column's current header")
                elif old in headers:
                    self.error(
                        where,
                        f"{old!r} is the header of schema[0].properties[{headers[old]}]; "
                        "a delivery would be ambiguous",
                    )
                else:
                    for other_name, (m, other) in self.columns.items():
                        if m != i and old in self._previous_names(other):
                            self.error(
                                where,
                                f"{old!r} is also a previous name of column {other_name!r}",
                            )

    @staticmethod
    def _previous_names(prop: dict[str, Any]) -> list[str]:
        for _, key, value in _custom_entries(prop):
            if key == "previousNames" and isinstance(value, list):
                return [str(v) for v in value]
        return []

    def rule_common(self, rule: dict[str, Any], parts: PathParts, kind: str) -> None:
        name = rule.get("name")
        if _blank(name):
            self.error((*parts, "name"), "every rule needs a name: breaches are recorded under it")
        elif name in self.rule_names:
            self.error(
                (*parts, "name"),
                f"rule name {name!r} is already used at {render_path(self.rule_names[name])}",
            )
        else:
            self.rule_names[name] = parts
        severity = rule.get("severity")
        if severity not in SEVERITIES:
            self.error(
                (*parts, "severity"),
                f"{_short(severity)} is not a severity; one of: {', '.join(SEVERITIES)}"
                f"{_did_you_mean(str(severity), SEVERITIES)}",
            )
        custom = {key: (j, value) for j, key, value in _custom_entries(rule)}
        for j, key, _ in _custom_entries(rule):
            if key not in RULE_CUSTOM:
                self.error(
                    (*parts, "customProperties", j, "property"),
                    f"unknown custom property {key!r}{_did_you_mean(key, RULE_CUSTOM)}; "
                    f"expected: {', '.join(RULE_CUSTOM)}",
                )
        if kind in ROW_RULE_KINDS:
            if "onFailure" not in custom:
                self.error(
                    (*parts, "customProperties"),
                    "a row rule must say onFailure: quarantine (the row is held back) or keep "
                    "(published, breach raised)",
                )
            else:
                j, value = custom["onFailure"]
                if value not in ON_FAILURE:
                    self.error(
                        (*parts, "customProperties", j, "value"),
                        f"onFailure must be one of: {', '.join(ON_FAILURE)}, not {_short(value)}",
                    )
        elif "onFailure" in custom:
            self.warn(
                (*parts, "customProperties", custom["onFailure"][0]),
                "onFailure applies to row rules only; a whole-delivery rule ignores it",
            )

    def column_rules(self, i: int, prop: dict[str, Any], name: str, ltype: Any) -> set[str] | None:
        quality = prop.get("quality")
        if not isinstance(quality, list):
            return None
        valid: set[str] | None = None
        in_period = 0
        for j, rule in enumerate(quality):
            if not isinstance(rule, dict):
                continue
            parts: PathParts = ("schema", 0, "properties", i, "quality", j)
            kind = rule_kind(rule)
            if kind == TEXT_RULE:
                self.warn(parts, "a text rule only describes; the pipeline does not check it")
                continue
            if kind not in COLUMN_RULE_KINDS:
                hint = (
                    " (a table-level rule: put it in schema[0].quality)"
                    if kind in TABLE_RULE_KINDS
                    else ""
                )
                self.error(
                    parts,
                    f"the pipeline does not enforce {kind!r} rules on a column{hint}; "
                    f"it enforces: {', '.join(COLUMN_RULE_KINDS)}",
                )
                continue
            self.rule_common(rule, parts, kind)
            arguments = rule.get("arguments") if isinstance(rule.get("arguments"), dict) else {}
            if kind == "invalidValues":
                values = arguments.get("validValues")
                if not isinstance(values, list) or not values:
                    self.error((*parts, "arguments", "validValues"), "must list the allowed values")
                    continue
                texts = [str(v) for v in values]
                for k, text in enumerate(texts):
                    if text in texts[:k]:
                        self.error(
                            (*parts, "arguments", "validValues", k), f"{text!r} is listed twice"
                        )
                if rule.get("mustBe") != 0:
                    self.error((*parts, "mustBe"), "an allowed-values rule must say mustBe: 0")
                valid = set(texts) if valid is None else valid & set(texts)
            elif kind == "missingValues":
                limit = rule.get("mustBeLessOrEqualTo")
                if (
                    not isinstance(limit, int | float)
                    or isinstance(limit, bool)
                    or not 0 <= limit <= 100
                ):
                    self.error(
                        (*parts, "mustBeLessOrEqualTo"),
                        "a completeness rule needs mustBeLessOrEqualTo, a percentage 0 to 100",
                    )
                if rule.get("unit") != "percent":
                    self.error((*parts, "unit"), "a completeness rule must say unit: percent")
            elif kind == "inPeriod":
                in_period += 1
                if ltype not in DATE_TYPES:
                    self.error(parts, f"column {name!r}: inPeriod needs a date or timestamp column")
                if in_period > 1:
                    self.error(parts, f"column {name!r} has more than one inPeriod rule")
        return valid

    def primary_key(self, props: list[dict[str, Any]]) -> None:
        positions: list[tuple[int, int]] = []
        for i, prop in enumerate(props):
            if not prop.get("primaryKey"):
                if prop.get("primaryKeyPosition") not in (None, -1):
                    self.warn(
                        ("schema", 0, "properties", i, "primaryKeyPosition"),
                        "primaryKeyPosition without primaryKey: true is ignored",
                    )
                continue
            base: PathParts = ("schema", 0, "properties", i)
            position = prop.get("primaryKeyPosition")
            if not _is_int(position) or position < 1:
                self.error(
                    (*base, "primaryKeyPosition"),
                    "a primary key column needs primaryKeyPosition 1, 2, ...",
                )
            else:
                positions.append((position, i))
            if prop.get("required") is not True:
                self.error((*base, "required"), "a primary key column must be required: true")
        numbers = sorted(p for p, _ in positions)
        if numbers and numbers != list(range(1, len(numbers) + 1)):
            self.error(
                ("schema", 0, "properties", positions[0][1], "primaryKeyPosition"),
                f"primary key positions must run 1..{len(numbers)}, not {numbers}",
            )

    def table_custom(self, table: dict[str, Any]) -> None:
        base: PathParts = ("schema", 0, "customProperties")
        for j, key, value in _custom_entries(table):
            if key not in TABLE_CUSTOM:
                self.error(
                    (*base, j, "property"),
                    f"unknown custom property {key!r}{_did_you_mean(key, TABLE_CUSTOM)}; "
                    f"expected: {', '.join(TABLE_CUSTOM)}",
                )
                continue
            parts = (*base, j, "value")
            if key == "snapshots":
                self.snapshots(value, parts, _layout_of(table).get("type") == "wide")
                continue
            if not isinstance(value, dict):
                self.error(parts, "layout must be a mapping")
                continue
            self.unknown_keys(value, parts, LAYOUT_KEYS)
            kind = value.get("type", "long")
            if kind not in ("wide", "long"):
                self.error((*parts, "type"), f"layout type is wide or long, not {_short(kind)}")
            if kind != "wide":
                continue
            pattern = value.get("valueColumnPattern")
            try:
                re.compile(str(pattern))
                if _blank(pattern):
                    raise re.error("empty")
            except re.error:
                self.error(
                    (*parts, "valueColumnPattern"), "a wide layout needs a valid valueColumnPattern"
                )
            try:
                _java_to_strptime(str(value.get("periodFormat", "yyyyMM")).replace("YYYY", "yyyy"))
            except ContractError as exc:
                self.error((*parts, "periodFormat"), str(exc))
            for key in ("periodName", "valueName"):
                named = value.get(key)
                if named is None:
                    continue
                if not isinstance(named, str) or not SNAKE_CASE.match(named):
                    self.error(
                        (*parts, key), f"must be a snake_case curated name, not {_short(named)}"
                    )
            if value.get("valueType", "integer") not in LOGICAL_TYPES:
                self.error((*parts, "valueType"), f"must be one of: {', '.join(LOGICAL_TYPES)}")
            self.agreed_periods(value.get("agreedPeriods"), (*parts, "agreedPeriods"))

    def snapshots(self, value: Any, parts: PathParts, wide: bool) -> None:
        """snapshots: `key`, the agreed columns naming one record (each required: a blank key
        would merge records), and `snapshotColumn`, the column ordering its snapshots (an
        agreed column or _period, the delivery's month; not a key column)."""
        if not isinstance(value, dict):
            self.error(parts, "snapshots must be a mapping (key, snapshotColumn)")
            return
        self.unknown_keys(value, parts, SNAPSHOTS_KEYS)
        if wide:
            self.error(
                parts,
                "a wide layout's view already takes each period from the newest release; "
                "snapshots is for long tables",
            )
        key = value.get("key")
        if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
            self.error((*parts, "key"), "must list the columns that name one record")
            key = []
        elif len(set(key)) != len(key):
            self.error((*parts, "key"), "names a column twice")
        for n, name in enumerate(key):
            if name not in self.columns:
                self.error(
                    (*parts, "key", n),
                    f"{name!r} is not a column of the contract{_did_you_mean(name, self.columns)}",
                )
            elif self.columns[name][1].get("required") is not True:
                self.error(
                    (*parts, "key", n),
                    f"key column {name!r} must be required: true (a blank key would merge "
                    "different records into one)",
                )
        column = value.get("snapshotColumn", "_period")
        known = [*self.columns, *LINEAGE_COLUMNS]
        if not isinstance(column, str) or column not in known:
            self.error(
                (*parts, "snapshotColumn"),
                f"{_short(column)} is not a column of the contract nor _period (the "
                f"delivery's month){_did_you_mean(str(column), known)}",
            )
        elif column in key:
            self.error(
                (*parts, "snapshotColumn"),
                f"{column!r} is in the key: the snapshots of a record differ in it",
            )

    def agreed_periods(self, agreed: Any, parts: PathParts) -> None:
        """A wide layout's agreedPeriods: how many periods a release carries, ending how many
        periods before the delivery's own."""
        if agreed is None:
            return
        if not isinstance(agreed, dict):
            self.error(parts, "agreedPeriods must be a mapping (count, endsPeriodsBefore)")
            return
        self.unknown_keys(agreed, parts, AGREED_PERIODS_KEYS)
        count = agreed.get("count")
        if not _is_int(count) or count < 1:
            self.error((*parts, "count"), f"must be a whole number >= 1, not {_short(count)}")
        before = agreed.get("endsPeriodsBefore", 1)
        if not _is_int(before) or before < 0:
            self.error(
                (*parts, "endsPeriodsBefore"), f"must be a whole number >= 0, not {_short(before)}"
            )

    def table_rules(self, table: dict[str, Any]) -> None:
        quality = table.get("quality")
        if not isinstance(quality, list):
            return
        for j, rule in enumerate(quality):
            if not isinstance(rule, dict):
                continue
            parts: PathParts = ("schema", 0, "quality", j)
            kind = rule_kind(rule)
            if kind == TEXT_RULE:
                self.warn(parts, "a text rule only describes; the pipeline does not check it")
                continue
            if kind not in TABLE_RULE_KINDS:
                self.error(
                    parts,
                    f"the pipeline does not enforce {kind!r} rules on the table; "
                    f"it enforces: {', '.join(TABLE_RULE_KINDS)}",
                )
                continue
            self.rule_common(rule, parts, kind)
            impl = rule.get("implementation")
            if not isinstance(impl, dict):
                self.error((*parts, "implementation"), "notBefore needs {rule, column, reference}")
                continue
            types = []
            for key in ("column", "reference"):
                column = impl.get(key)
                if column not in self.columns:
                    self.error(
                        (*parts, "implementation", key),
                        f"no column is named {_short(column)}"
                        f"{_did_you_mean(str(column), self.columns)}",
                    )
                    continue
                types.append(self.columns[column][1].get("logicalType"))
            if len(types) == 2 and (types[0] not in ORDERED_TYPES or types[0] != types[1]):
                self.error(
                    (*parts, "implementation"),
                    f"notBefore compares two columns of the same date, time or number type, "
                    f"not {types[0]} and {types[1]}",
                )

    def pipeline_rule_names_unique(self, table: dict[str, Any], props: list[dict]) -> None:
        # Built-in rule ids (<column>.required, .type, .range, .pattern, .unique) share the
        # breach register with named rules, so a named rule must not take one of them.
        builtin = {
            f"{p.get('name')}.{suffix}"
            for p in props
            for suffix in ("required", "type", "range", "pattern", "unique")
        }
        for name, parts in self.rule_names.items():
            if name in builtin:
                self.error((*parts, "name"), f"rule name {name!r} clashes with a built-in rule id")


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
    # The page imports this module; it is read here only once a document is in hand.
    from schemas.contract_page import SECTIONS, TOPIC_WORDS, _valid_values, rule_clauses

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


def lint_document(doc: Any, path: Path, file: str | None = None) -> list[Finding]:
    """Every fault in one parsed contract: the ODCS schema first, then our own rules."""
    file = file or str(path)
    if not isinstance(doc, dict):
        return [Finding(file, "", "the file is not a YAML mapping (is it a contract?)")]
    findings = odcs_findings(doc, file)
    findings += _Checker(doc, path, file).run()
    findings += text_findings(doc, file)
    if not any(f.level == "error" for f in findings):
        try:
            parse_contract(doc, path)
        except (ContractError, KeyError, TypeError, ValueError, AttributeError) as exc:
            findings.append(Finding(file, "", f"the pipeline cannot read this contract: {exc}"))
    return findings


def display_name(path: Path) -> str:
    """The path as people typed it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def lint_file(path: Path) -> list[Finding]:
    """Every fault in one contract file, including YAML it cannot read and duplicate keys."""
    file = display_name(path)
    try:
        doc, duplicates = read_contract_yaml(path)
    except OSError as exc:
        return [Finding(file, "", f"cannot read the file: {exc.strerror or exc}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return [Finding(file, "", f"{where}not valid YAML: {problem}")]
    findings = [Finding(file, "", message) for message in duplicates]
    return findings + lint_document(doc, path, file)


def contract_paths(paths: Sequence[Path] = ()) -> list[Path]:
    """The contract files to check: the given files and folders, or every contract."""
    if not paths:
        paths = [contracts_dir()]
    found: list[Path] = []
    for path in paths:
        found += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return found


def lint_files(paths: Sequence[Path]) -> list[Finding]:
    """Every fault in the given contract files, and clashes between them (names, ids, tables)."""
    findings: list[Finding] = []
    claimed: dict[tuple[str, str], str] = {}
    for path in paths:
        findings += lint_file(path)
        try:
            doc, _ = read_contract_yaml(path)
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict):
            continue
        table = (doc.get("schema") or [{}])[0] if isinstance(doc.get("schema"), list) else {}
        table = table if isinstance(table, dict) else {}
        keys = {
            "name": doc.get("name"),
            "id": doc.get("id"),
            "schema[0].name": table.get("name"),
            "schema[0].physicalName": table.get("physicalName"),
        }
        for where, value in keys.items():
            if not isinstance(value, str) or not value:
                continue
            if (where, value) in claimed:
                findings.append(
                    Finding(
                        display_name(path),
                        where,
                        f"{value!r} is already used by {claimed[(where, value)]}",
                    )
                )
            else:
                claimed[(where, value)] = display_name(path)
    return findings
