"""A typed model of a data contract (ODCS v3 plus the sharing-agreement terms).

The YAML in `data_contracts/` is the source of truth; this module only reads it into
plain dataclasses that the rest of the code can rely on. It knows nothing of Dagster.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Severity = Literal["critical", "major", "minor"]
OnFailure = Literal["quarantine", "keep"]
LogicalType = Literal["string", "timestamp", "date", "time", "number", "integer", "boolean"]
Period = Literal["monthly", "quarterly", "annual", "once"]
FilesPerPeriod = Literal["one", "parts"]

SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor")
MIX_MINIMUM_VALUES = 100  # non-blank values a category-mix change is judged over, by default
DEFAULT_CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "data_contracts"


class ContractError(ValueError):
    """A contract file that cannot be turned into a working contract."""


@dataclass(frozen=True)
class ValueRule:
    """A row rule on one column, from the contract's `quality` list (`invalidValues`)."""

    name: str
    valid_values: tuple[str, ...]
    severity: Severity
    on_failure: OnFailure
    description: str = ""


@dataclass(frozen=True)
class CompletenessRule:
    """A dataset rule: the share of missing values in a column must stay under a limit."""

    name: str
    column: str
    missing_values: tuple[str | None, ...]
    max_percent: float
    severity: Severity
    description: str = ""


@dataclass(frozen=True)
class InPeriodRule:
    """A row rule: a timestamp column must fall inside the delivery's month (London time)."""

    name: str
    severity: Severity
    on_failure: OnFailure
    description: str = ""


@dataclass(frozen=True)
class NotBeforeRule:
    """A row rule across fields: `column` is blank or not earlier than `reference`."""

    name: str
    column: str
    reference: str
    severity: Severity
    on_failure: OnFailure
    description: str = ""


@dataclass(frozen=True)
class WideLayout:
    """One value column per period (e.g. `202401`), curated as long rows."""

    value_column_pattern: str
    period_format: str  # strptime, e.g. %Y%m
    period_name: str
    value_name: str
    value_type: LogicalType
    value_minimum: float | None
    period_description: str
    value_description: str
    # The periods a release must carry: `agreed_periods` of them, the newest being
    # `periods_end_before` periods before the delivery's own (24 and 1: the 24 months to the
    # month before the release). None: not agreed, any periods are taken.
    agreed_periods: int | None = None
    periods_end_before: int = 1


@dataclass(frozen=True)
class Snapshots:
    """Records delivered again and again as they change (the table's customProperties
    `snapshots`): the curated table keeps every snapshot, and `<contract>_latest` the latest
    of each record, by `key` and the column that orders snapshots (`_period`: the delivery's
    month)."""

    key: tuple[str, ...]
    snapshot_column: str = "_period"


@dataclass(frozen=True)
class Column:
    """One agreed column: its delivered header, curated name, type and row rules."""

    name: str
    source_name: str
    logical_type: LogicalType
    required: bool
    description: str
    classification: str | None = None
    timestamp_format: str | None = None  # strptime format for dates, times and timestamps
    default_timezone: str | None = None  # for timestamps delivered without an offset
    example: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    value_rules: tuple[ValueRule, ...] = ()
    in_period_rule: InPeriodRule | None = None
    previous_names: tuple[str, ...] = ()
    unique: bool = False
    primary_key_position: int | None = None


@dataclass(frozen=True)
class DeliverySchedule:
    period: Period
    first_period: str
    due_day_of_following_month: int
    late_after_days: int
    late_checks_from: str | None = None  # first period watched for lateness (optional)
    # "one": one file is the period's delivery, a second one replaces it (and says so);
    # "parts": every readable file of the period is a part of its delivery, all published.
    files_per_period: FilesPerPeriod = "one"


@dataclass(frozen=True)
class Contract:
    """A data contract, ready for the pipeline to compile into checks."""

    name: str
    version: str
    title: str
    description: str
    path: Path
    columns: tuple[Column, ...]
    completeness_rules: tuple[CompletenessRule, ...]
    schedule: DeliverySchedule
    agreement: dict[str, Any] = field(default_factory=dict)
    owners: tuple[str, ...] = ()
    cross_rules: tuple[NotBeforeRule, ...] = ()
    layout: WideLayout | None = None
    file_format: dict[str, Any] = field(default_factory=dict)  # customProperties.fileFormat
    file_name: str | None = None  # schema[0].physicalName, e.g. YYYY-MM-metropolitan-....csv
    # The least share of a delivery's rows that must pass for it to be published at all
    # (customProperties.minPublishableShare); None: any row at all.
    min_publishable_share: float | None = None
    # A category-mix change is judged only over at least this many non-blank values, in the
    # delivery and in the history's average month (customProperties.mixMinimumValues).
    mix_minimum_values: int = MIX_MINIMUM_VALUES
    snapshots: Snapshots | None = None

    @property
    def unique_keys(self) -> tuple[tuple[str, ...], ...]:
        """Column-name tuples that must be unique across a delivery (primary key first)."""
        pk = sorted(
            (c for c in self.columns if c.primary_key_position),
            key=lambda c: c.primary_key_position,
        )
        keys = [tuple(c.name for c in pk)] if pk else []
        keys += [(c.name,) for c in self.columns if c.unique and (c.name,) not in keys]
        return tuple(keys)

    @property
    def pseudonymised(self) -> tuple[str, ...]:
        return tuple(self.agreement.get("pseudonymisedFields") or ())

    @property
    def classified(self) -> tuple[str, ...]:
        """Columns whose values never appear in breach reports or analysts' quarantine."""
        return tuple(
            c.name
            for c in self.columns
            if c.classification in ("personal", "special-category", "restricted")
            or c.name in self.pseudonymised
        )

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(c.source_name for c in self.columns)

    @property
    def required_source_names(self) -> tuple[str, ...]:
        return tuple(c.source_name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _custom_properties(block: dict[str, Any]) -> dict[str, Any]:
    return {p["property"]: p.get("value") for p in block.get("customProperties") or []}


def _severity(raw: Any, where: str) -> Severity:
    if raw not in SEVERITIES:
        raise ContractError(
            f"{where}: severity must be one of {', '.join(SEVERITIES)}, not {raw!r}"
        )
    return raw


def _java_to_strptime(fmt: str) -> str:
    """Translate the contract's JDK-style date/time format into a strptime format."""
    table = [
        ("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"),
        ("mm", "%M"), ("ss", "%S"), ("xxx", "%:z"), ("XXX", "%:z"), ("'T'", "T"),
    ]  # fmt: skip
    out = fmt
    for java, py in table:
        out = out.replace(java, py)
    if re.search(r"[A-Za-z]", re.sub(r"%:?[A-Za-z]|T", "", out)):
        raise ContractError(f"timestamp format {fmt!r} uses letters this pipeline cannot parse")
    return out


def _column(prop: dict[str, Any], where: str) -> Column:
    name = prop["name"]
    where = f"{where}.properties[{name}]"
    options = prop.get("logicalTypeOptions") or {}
    value_rules: list[ValueRule] = []
    in_period: InPeriodRule | None = None
    for q in prop.get("quality") or []:
        custom = _custom_properties(q)
        qwhere = f"{where}.quality[{q.get('name')}]"
        if q.get("metric") == "invalidValues":
            value_rules.append(
                ValueRule(
                    name=q["name"],
                    valid_values=tuple(str(v) for v in q["arguments"]["validValues"]),
                    severity=_severity(q.get("severity"), qwhere),
                    on_failure=custom.get("onFailure", "quarantine"),
                    description=" ".join((q.get("description") or "").split()),
                )
            )
        elif q.get("type") == "custom" and _rule_name(q) == "inPeriod":
            in_period = InPeriodRule(
                name=q["name"],
                severity=_severity(q.get("severity"), qwhere),
                on_failure=custom.get("onFailure", "quarantine"),
                description=" ".join((q.get("description") or "").split()),
            )
    fmt = (
        options.get("format") if prop.get("logicalType") in ("timestamp", "date", "time") else None
    )
    custom = _custom_properties(prop)
    return Column(
        name=name,
        source_name=prop.get("physicalName", name),
        logical_type=prop.get("logicalType", "string"),
        required=bool(prop.get("required", False)),
        description=" ".join((prop.get("description") or "").split()),
        classification=prop.get("classification"),
        timestamp_format=_java_to_strptime(fmt) if fmt else None,
        default_timezone=options.get("defaultTimezone"),
        example=str(prop["examples"][0]) if prop.get("examples") else None,
        minimum=options.get("minimum"),
        maximum=options.get("maximum"),
        pattern=options.get("pattern"),
        value_rules=tuple(value_rules),
        in_period_rule=in_period,
        previous_names=tuple(custom.get("previousNames") or ()),
        unique=bool(prop.get("unique", False)),
        primary_key_position=prop.get("primaryKeyPosition") if prop.get("primaryKey") else None,
    )


def _rule_name(q: dict[str, Any]) -> str | None:
    impl = q.get("implementation")
    return impl.get("rule") if isinstance(impl, dict) else impl


def _cross_rules(table: dict[str, Any], where: str) -> list[NotBeforeRule]:
    rules = []
    for q in table.get("quality") or []:
        if q.get("type") == "custom" and _rule_name(q) == "notBefore":
            impl = q["implementation"]
            rules.append(
                NotBeforeRule(
                    name=q["name"],
                    column=impl["column"],
                    reference=impl["reference"],
                    severity=_severity(q.get("severity"), f"{where}.quality[{q['name']}]"),
                    on_failure=_custom_properties(q).get("onFailure", "quarantine"),
                    description=" ".join((q.get("description") or "").split()),
                )
            )
    return rules


def _layout(table: dict[str, Any]) -> WideLayout | None:
    raw = _custom_properties(table).get("layout") or {}
    if raw.get("type", "long") != "wide":
        return None
    return WideLayout(
        value_column_pattern=raw["valueColumnPattern"],
        period_format=_java_to_strptime(raw.get("periodFormat", "yyyyMM").replace("YYYY", "yyyy")),
        period_name=raw.get("periodName", "month"),
        value_name=raw.get("valueName", "value"),
        value_type=raw.get("valueType", "integer"),
        value_minimum=raw.get("valueMinimum", 0),
        period_description=raw.get("periodDescription", "The month the figure is for."),
        value_description=raw.get("valueDescription", "The figure for the month."),
        agreed_periods=(raw.get("agreedPeriods") or {}).get("count"),
        periods_end_before=int((raw.get("agreedPeriods") or {}).get("endsPeriodsBefore", 1)),
    )


def _snapshots(table: dict[str, Any]) -> Snapshots | None:
    raw = _custom_properties(table).get("snapshots")
    if not raw:
        return None
    return Snapshots(key=tuple(raw["key"]), snapshot_column=raw.get("snapshotColumn", "_period"))


def _completeness_rules(prop: dict[str, Any], where: str) -> list[CompletenessRule]:
    rules = []
    for q in prop.get("quality") or []:
        if q.get("metric") != "missingValues":
            continue
        rules.append(
            CompletenessRule(
                name=q["name"],
                column=prop["name"],
                missing_values=tuple(q.get("arguments", {}).get("missingValues", [None, ""])),
                max_percent=float(q["mustBeLessOrEqualTo"]),
                severity=_severity(q.get("severity"), f"{where}.quality[{q['name']}]"),
                description=" ".join((q.get("description") or "").split()),
            )
        )
    return rules


def parse_contract(doc: dict[str, Any], path: Path) -> Contract:
    """Build a Contract from an already-parsed ODCS document."""
    try:
        table = doc["schema"][0]
        where = f"schema[{table['name']}]"
        props = table["properties"]
        columns = tuple(_column(p, where) for p in props)
        completeness = tuple(r for p in props for r in _completeness_rules(p, where))
        cross_rules = tuple(_cross_rules(table, where))
        layout = _layout(table)
        custom = _custom_properties(doc)
        sched = custom["deliverySchedule"]
        schedule = DeliverySchedule(
            period=sched["period"],
            first_period=str(sched["firstPeriod"]),
            due_day_of_following_month=int(sched["dueDayOfFollowingMonth"]),
            late_after_days=int(sched["lateAfterDays"]),
            late_checks_from=str(sched["lateChecksFrom"]) if sched.get("lateChecksFrom") else None,
            files_per_period=sched.get("filesPerPeriod", "one"),
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise ContractError(f"{path}: missing or malformed field {exc}") from exc
    team = doc.get("team") or {}
    return Contract(
        name=doc["name"],
        version=str(doc["version"]),
        title=table.get("description", doc["name"]),
        description=" ".join(((doc.get("description") or {}).get("purpose") or "").split()),
        path=path,
        columns=columns,
        completeness_rules=completeness,
        schedule=schedule,
        agreement=custom.get("sharingAgreement") or {},
        owners=(f"team:{team['name']}",) if team.get("name") else (),
        cross_rules=cross_rules,
        layout=layout,
        file_format=custom.get("fileFormat") or {},
        file_name=table.get("physicalName"),
        min_publishable_share=(
            float(custom["minPublishableShare"])
            if custom.get("minPublishableShare") is not None
            else None
        ),
        mix_minimum_values=int(custom.get("mixMinimumValues", MIX_MINIMUM_VALUES)),
        snapshots=_snapshots(table),
    )


def load_contract(path: Path) -> Contract:
    """Read one contract YAML file."""
    path = Path(path)
    return _load_contract(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _load_contract(path: Path, mtime_ns: int) -> Contract:
    # Cached by modification time: runs load every contract many times; an edit reloads.
    return parse_contract(contract_yaml(str(path), mtime_ns), path)


@functools.lru_cache(maxsize=256)
def contract_yaml(path: str, mtime_ns: int) -> Any:
    """A contract file's YAML, parsed once per version of the file (`mtime_ns`): the model
    here and the agreement page's clauses (`contract_page.contract_document`) read the same
    parse, which its readers leave as it is. libyaml's loader when there is one: a contract
    of 1,200 lines takes 0.2 s in Python's."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def contracts_dir() -> Path:
    return Path(os.environ.get("DATASHARE_CONTRACTS", DEFAULT_CONTRACTS_DIR))


def load_contracts(directory: Path | None = None) -> dict[str, Contract]:
    """Every contract in the contracts folder, by name."""
    directory = directory or contracts_dir()
    contracts = {}
    for path in sorted(directory.glob("*.yaml")):
        contract = load_contract(path)
        contracts[contract.name] = contract
    return contracts
