"""The vocabulary of a data contract: the terms, kinds and values our rules know, and a
finding (one fault, where it is, in plain words). Read by the lint and the agreement page."""

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from schemas.contract import (
    LogicalType,
    OnFailure,
    Period,
)

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


def did_you_mean(word: str, options: Iterable[str]) -> str:
    options = [o for o in options if isinstance(o, str)]
    for option in options:
        if option.lower() == word.lower():
            return f" (did you mean {option}?)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def quoted(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iso_duration_parts(text: str) -> dict[str, float] | None:
    """The components of an ISO 8601 duration (`P6Y` -> {"years": 6}), or None if invalid."""
    match = ISO_DURATION.match(text)
    if not match:
        return None
    names = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
    return {n: float(v.replace(",", ".")) for n, v in zip(names, match.groups(), strict=True) if v}


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
