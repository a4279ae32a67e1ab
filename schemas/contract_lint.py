"""Check data contracts against ODCS v3.1.0 and against our sharing-agreement conventions.

Three layers, each in its own module. The official ODCS v3.1.0 JSON schema
(`schemas.odcs_schema`) catches structural faults and typos at any depth. Our own rules
(data_contracts/README.md) catch what a data-sharing agreement needs and ODCS leaves out:
the agreement terms, the special-category and pseudonymised fields, owners on both sides and
the delivery schedule (`schemas.agreement_lint`), and the table, its columns and rules the
pipeline can actually enforce (here). Last, what the contract's texts claim about the
agreement page is checked against it (`schemas.contract_text_lint`).

Every finding carries the file and the path to the fault in ODCS notation, for example
`data_contracts/x.yaml: schema[0].properties[3].logicalTypeOption: unknown field (did you
mean logicalTypeOptions?)`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from schemas.agreement_lint import AgreementChecker, blank, custom_entries, is_int, layout_of
from schemas.contract import (
    SEVERITIES,
    ContractError,
    _java_to_strptime,
    contracts_dir,
    parse_contract,
)
from schemas.contract_terms import (
    AGREED_PERIODS_KEYS,
    CLASSIFICATIONS,
    COLUMN_CUSTOM,
    COLUMN_RULE_KINDS,
    DATE_TYPES,
    ENFORCED_OPTIONS,
    LAYOUT_KEYS,
    LINEAGE_COLUMNS,
    LOGICAL_TYPES,
    LOOKS_PERSONAL,
    LOOKS_SPECIAL,
    ON_FAILURE,
    ORDERED_TYPES,
    ROW_RULE_KINDS,
    RULE_CUSTOM,
    SNAKE_CASE,
    SNAPSHOTS_KEYS,
    TABLE_CUSTOM,
    TABLE_RULE_KINDS,
    TEXT_RULE,
    Finding,
    PathParts,
    did_you_mean,
    quoted,
    render_path,
    rule_kind,
)
from schemas.contract_text_lint import text_findings
from schemas.odcs_schema import odcs_findings

# --- reading the YAML ---------------------------------------------------------------------


# LibYAML's parser where PyYAML was built with it (as `schemas.contract` reads contracts): the
# pure-Python one took half of `contracts lint`'s CPU, which `datashare doctor` pays each time.
_SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SAFE_LOADER):
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


class _Checker(AgreementChecker):
    """Collects findings for one contract document against our conventions."""

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
                f"the curated table name must be snake_case, not {quoted(name)}",
            )
        if blank(table.get("physicalName")):
            self.error(("schema", 0, "physicalName"), "missing: the delivered file name pattern")
        if blank(table.get("description")):
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
        layout = layout_of(table)
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
            elif blank(physical):
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
                f"not {quoted(ltype)}",
            )
        options = prop.get("logicalTypeOptions")
        options = options if isinstance(options, dict) else {}
        if ltype in DATE_TYPES:
            fmt = options.get("format")
            if blank(fmt):
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
                        f"{quoted(zone)} is not a time zone name such as Europe/London",
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
                f"{quoted(classification)} is not one of: {', '.join(CLASSIFICATIONS)}"
                f"{did_you_mean(str(classification), CLASSIFICATIONS)}",
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
                parts,
                f"column {name!r}: the example shown to people {quoted(example)} {problem}",
            )

    def column_custom(self, i: int, prop: dict[str, Any], headers: dict[str, int]) -> None:
        base: PathParts = ("schema", 0, "properties", i, "customProperties")
        for j, key, value in custom_entries(prop):
            if key not in COLUMN_CUSTOM:
                self.error(
                    (*base, j, "property"),
                    f"unknown custom property {key!r}{did_you_mean(key, COLUMN_CUSTOM)}; "
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
        for _, key, value in custom_entries(prop):
            if key == "previousNames" and isinstance(value, list):
                return [str(v) for v in value]
        return []

    def rule_common(self, rule: dict[str, Any], parts: PathParts, kind: str) -> None:
        name = rule.get("name")
        if blank(name):
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
                f"{quoted(severity)} is not a severity; one of: {', '.join(SEVERITIES)}"
                f"{did_you_mean(str(severity), SEVERITIES)}",
            )
        custom = {key: (j, value) for j, key, value in custom_entries(rule)}
        for j, key, _ in custom_entries(rule):
            if key not in RULE_CUSTOM:
                self.error(
                    (*parts, "customProperties", j, "property"),
                    f"unknown custom property {key!r}{did_you_mean(key, RULE_CUSTOM)}; "
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
                        f"onFailure must be one of: {', '.join(ON_FAILURE)}, not {quoted(value)}",
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
            if not is_int(position) or position < 1:
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
        for j, key, value in custom_entries(table):
            if key not in TABLE_CUSTOM:
                self.error(
                    (*base, j, "property"),
                    f"unknown custom property {key!r}{did_you_mean(key, TABLE_CUSTOM)}; "
                    f"expected: {', '.join(TABLE_CUSTOM)}",
                )
                continue
            parts = (*base, j, "value")
            if key == "snapshots":
                self.snapshots(value, parts, layout_of(table).get("type") == "wide")
                continue
            if not isinstance(value, dict):
                self.error(parts, "layout must be a mapping")
                continue
            self.unknown_keys(value, parts, LAYOUT_KEYS)
            kind = value.get("type", "long")
            if kind not in ("wide", "long"):
                self.error((*parts, "type"), f"layout type is wide or long, not {quoted(kind)}")
            if kind != "wide":
                continue
            pattern = value.get("valueColumnPattern")
            try:
                re.compile(str(pattern))
                if blank(pattern):
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
                        (*parts, key),
                        f"must be a snake_case curated name, not {quoted(named)}",
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
                    f"{name!r} is not a column of the contract{did_you_mean(name, self.columns)}",
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
                f"{quoted(column)} is not a column of the contract nor _period (the "
                f"delivery's month){did_you_mean(str(column), known)}",
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
        if not is_int(count) or count < 1:
            self.error((*parts, "count"), f"must be a whole number >= 1, not {quoted(count)}")
        before = agreed.get("endsPeriodsBefore", 1)
        if not is_int(before) or before < 0:
            self.error(
                (*parts, "endsPeriodsBefore"),
                f"must be a whole number >= 0, not {quoted(before)}",
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
                        f"no column is named {quoted(column)}"
                        f"{did_you_mean(str(column), self.columns)}",
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
