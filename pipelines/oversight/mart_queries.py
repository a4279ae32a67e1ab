"""The marts and their queries, the layer both the runner and its incremental plan read.

Each mart is two files an analyst owns, in `pipelines/oversight/marts/` (see
`mart_runner.py`); this module loads them once (`MARTS`, in the pack's order), the mappings
their SQL reads (as `oversight_ref` tables), the contracts as they are now
(`current_contracts`), and writes a mart's whole query: its own SQL with the runner's part
added (`mart_sql`, `finish_sql`: small counts withheld, columns cast, rows ordered).
Nothing here opens a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipelines.oversight.definition import Mart, Suppression, load_marts, marts_dir
from pipelines.warehouse.reference import MAPPINGS_DIR, NOT_STATED, read_mapping
from schemas.contract import Contract, contracts_dir, load_contracts

# --- mappings (data, not code; the marts read them as oversight_ref tables) -------------


@dataclass(frozen=True)
class Mappings:
    groups: tuple[str, ...]
    ethnicity: dict[str, dict[str, str]]  # "<contract>.<column>" -> value -> group
    age_to_census: dict[str, str]
    census_band_labels: dict[str, str]
    outcome_groups: dict[str, tuple[str, ...]]  # group -> outcome types, in precedence order
    no_further_action: tuple[str, ...]


@cache
def load_mappings(directory: Path = MAPPINGS_DIR) -> Mappings:
    ethnicity = read_mapping(directory, "ethnicity.yaml")
    ages = read_mapping(directory, "age_bands.yaml")
    outcomes = read_mapping(directory, "outcomes.yaml")
    groups = tuple(ethnicity.pop("groups"))
    for key, mapping in ethnicity.items():
        unknown = set(mapping.values()) - set(groups) - {NOT_STATED}
        if unknown:
            raise ValueError(f"ethnicity mapping {key} maps to unknown groups {sorted(unknown)}")
    return Mappings(
        groups=groups,
        ethnicity={k: {str(a): str(b) for a, b in v.items()} for k, v in ethnicity.items()},
        age_to_census=dict(ages["use_of_force.subject_age"]),
        census_band_labels=dict(ages["census_band_labels"]),
        outcome_groups={g: tuple(v) for g, v in outcomes["crime_outcome_groups"].items()},
        no_further_action=tuple(outcomes["stop_and_search.no_further_action"]),
    )


# --- the marts -------------------------------------------------------------------------


# Every mart is kept as files (`pipelines/oversight/marts/<mart>.sql` and `.yaml`); here in
# the pack's order, a mart an analyst adds after these.
PACK_ORDER = (
    "stop_search_disproportionality",
    "stop_search_outcomes",
    "crime_trends",
    "crime_outcome_rates",
    "use_of_force_subjects",
    "use_of_force_tactics",
    "complaints_timeliness",
    "emergency_response",
    "trust_and_confidence",
    "workforce_representation",
    "data_quality",
)
_ALL_MARTS = load_marts(marts_dir())
MARTS: dict[str, Mart] = {
    name: _ALL_MARTS[name]
    for name in sorted(
        _ALL_MARTS, key=lambda n: (PACK_ORDER.index(n) if n in PACK_ORDER else 99, n)
    )
}


# --- the contracts now, and a mart's whole query -----------------------------------------


_LOADED: dict[tuple, dict[str, Contract]] = {}


def marts_reading(contracts: set[str], all_contracts: dict[str, Contract]) -> list[str]:
    """The marts that read any of `contracts`: what a run that changed them recomputes."""
    return [
        name
        for name, mart in MARTS.items()
        if contracts & set(mart.source_contracts(all_contracts))
    ]


def current_contracts() -> dict[str, Contract]:
    """The contracts in the contracts folder, read again only when a file there changed."""
    directory = contracts_dir()
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.yaml")))
    key = (str(directory), stamp)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_contracts(directory)
    return _LOADED[key]


def mart_sql(mart: Mart, contracts: dict[str, Contract] | None = None) -> str:
    """The mart's whole query: its SQL, suppression, the declared columns, the order."""
    contracts = contracts or current_contracts()
    return finish_sql(mart, mart.sql(load_mappings(), contracts))


def finish_sql(mart: Mart, body: str) -> str:
    """What the runner adds to a mart's own SQL (`body`): small counts withheld (NULL, with
    their `_suppressed` flags), the declared columns cast to their types, the order."""
    active = mart._active_suppressions()
    threshold = mart.threshold or 0

    def withheld_sql(s: Suppression) -> str:
        return f"coalesce({s.count} BETWEEN 1 AND {threshold - 1}, false)"

    select = []
    flags = {s.count: s for s in active if s.flag}
    for col in mart.columns:
        conditions = [withheld_sql(s) for s in active if col.name in s.withheld]
        expr = col.name
        if conditions:
            expr = f"CASE WHEN {' OR '.join(conditions)} THEN NULL ELSE {col.name} END"
        select.append(f"CAST({expr} AS {col.type}) AS {col.name}")
        if col.name in flags:
            select.append(f"{withheld_sql(flags[col.name])} AS {flags[col.name].flag_name}")
    order = ", ".join(f"{o} NULLS LAST" for o in mart.order_by)
    columns = ",\n       ".join(select)
    return f"WITH mart AS (\n{body}\n)\nSELECT {columns}\nFROM mart\nORDER BY {order}"


def sql_string(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
