"""Measured profiles (`synthetic_profiles/<contract>.yaml`): loaded and checked against their
contract, so a profile that does not fit says where."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from pipelines.demo.synthetic_columns import matches
from pipelines.demo.synthetic_time import PROFILES_DIR, UNITS, ProfileError, time_kind_of
from schemas.contract import Column, Contract

# --- profiles ---------------------------------------------------------------------------

_GENERATORS = (
    "weights",
    "given",
    "constant",
    "timestamp",
    "map_point",
    "after",
    "reference",
    "pool",
    "normal",
    "count",
    "fraction_of",
)


def load_profile(contract: Contract, directory: Path | None = None) -> dict[str, Any]:
    """The contract's synthetic profile, checked against the contract; {} if it has none."""
    path = (directory or PROFILES_DIR) / f"{contract.name}.yaml"
    if not path.exists():
        return {}
    # A copy, so that nothing done with one delivery's profile reaches the next's.
    profile = copy.deepcopy(_parsed(path))
    _check_profile(contract, profile, path)
    return profile


# Parsed profiles by (path, modified, size): a process writing a contract's months reads its
# profile once (use of force's took 43 ms to parse, and the demo writes 24 months of it).
_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}


def _parsed(path: Path) -> dict[str, Any]:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _PARSED:
        with open(path, encoding="utf-8") as fh:
            # libyaml's safe loader where PyYAML has it: the pure-Python one took 0.23 s a
            # profile.
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            _PARSED[key] = yaml.load(fh, Loader=loader) or {}
    return _PARSED[key]


def valid_values(column: Column) -> set[str] | None:
    if not column.value_rules:
        return None
    allowed = set(column.value_rules[0].valid_values)
    for rule in column.value_rules[1:]:
        allowed &= set(rule.valid_values)
    return allowed


def _check_value(column: Column, value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {value!r} must be written as text")
    if value == "":
        if column.required:
            raise ProfileError(f"{where}: {column.source_name} is required and cannot be blank")
        return
    allowed = valid_values(column)
    if allowed is not None and value not in allowed:
        raise ProfileError(f"{where}: {value!r} is not a valid {column.source_name}")
    if column.logical_type == "boolean" and value not in ("True", "False"):
        raise ProfileError(f"{where}: {value!r} is not True or False")
    if not matches(column.pattern, value):
        raise ProfileError(f"{where}: {value!r} does not match {column.pattern!r}")


def _check_weights(column: Column, weights: Any, where: str) -> None:
    if not isinstance(weights, dict) or not weights:
        raise ProfileError(f"{where}: weights must be a non-empty mapping of value to weight")
    for value, weight in weights.items():
        _check_value(column, value, where)
        if not isinstance(weight, int | float) or weight < 0:
            raise ProfileError(f"{where}: weight of {value!r} must be a non-negative number")
    if sum(weights.values()) <= 0:
        raise ProfileError(f"{where}: weights are all zero")


def _check_profile(contract: Contract, profile: dict[str, Any], path: Path) -> None:
    by_source = {c.source_name: c for c in contract.columns}

    def delivered(name: Any, where: str, what: str) -> Column:
        if name not in by_source:
            raise ProfileError(f"{where}: {what} {name!r} is not delivered")
        return by_source[name]

    if profile.get("contract", contract.name) != contract.name:
        raise ProfileError(f"{path}: profile is for {profile['contract']!r}, not {contract.name}")
    for name, spec in (profile.get("columns") or {}).items():
        where = f"{path.name}: columns[{name}]"
        column = by_source.get(name)
        if column is None:
            raise ProfileError(f"{where}: the contract has no column delivered as {name!r}")
        if "constant" in spec:
            _check_value(column, spec["constant"], where)
        elif "given" in spec:
            delivered(spec["given"], where, "given column")
            for parent, table in spec["weights"].items():
                if not isinstance(parent, str):
                    raise ProfileError(f"{where}: {parent!r} must be written as text")
                _check_weights(column, table, f"{where}.weights[{parent}]")
        elif "weights" in spec:
            _check_weights(column, spec["weights"], where)
        elif "map_point" in spec:
            other = delivered(spec["map_point"].get("longitude"), where, "longitude column")
            if (column.required or other.required) and spec["map_point"]["blank"]:
                raise ProfileError(f"{where}: a required coordinate cannot be blank")
        elif "timestamp" in spec:
            day = (spec["timestamp"] or {}).get("day")
            if day not in (None, "first", "last"):
                raise ProfileError(f"{where}: timestamp.day must be first or last")
        elif "after" in spec:
            after = spec["after"]
            reference = delivered(after.get("column"), where, "after column")
            if time_kind_of(column) is None or time_kind_of(reference) is None:
                raise ProfileError(f"{where}: after links a date or time to a date or time")
            if after.get("given"):
                delivered(after["given"], where, "given column")
            if after.get("unit", "minutes") not in UNITS:
                raise ProfileError(f"{where}: after.unit must be one of {', '.join(UNITS)}")
        elif "reference" in spec:
            if spec["reference"].get("date"):
                delivered(spec["reference"]["date"], where, "reference date column")
            if "template" not in spec["reference"]:
                raise ProfileError(f"{where}: a reference needs a template")
        elif "normal" in spec:
            if spec["normal"].get("given"):
                delivered(spec["normal"]["given"], where, "given column")
        elif "fraction_of" in spec:
            delivered(spec["fraction_of"].get("column"), where, "fraction_of column")
        elif "count" in spec:
            if column.logical_type != "integer":
                raise ProfileError(f"{where}: count makes whole numbers")
        elif "pool" not in spec:
            raise ProfileError(f"{where}: say how to generate it ({', '.join(_GENERATORS)})")
        blank_with = spec.get("blank_with")
        if blank_with:
            if column.required:
                raise ProfileError(f"{where}: a required column cannot be blanked")
            delivered(blank_with.get("column"), where, "blank_with column")
    groups = profile.get("groups")
    if groups:
        number = delivered(groups.get("number"), f"{path.name}: groups", "number column")
        if number.logical_type not in ("integer", "string"):
            raise ProfileError(f"{path.name}: groups.number must be a whole-number column")
        for name in groups.get("shared") or []:
            delivered(name, f"{path.name}: groups.shared", "column")
    layout = profile.get("layout")
    if layout:
        if contract.layout is None:
            raise ProfileError(f"{path.name}: layout is for a contract with a wide layout")
        means = layout.get("count_means") or {}
        if means:
            delivered(means.get("column"), f"{path.name}: layout.count_means", "column")
    for name in (profile.get("defects") or {}).get("invalid_values") or {}:
        if name not in by_source:
            raise ProfileError(f"{path.name}: defects.invalid_values[{name}] is not delivered")
