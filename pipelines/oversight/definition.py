"""What a mart is: its definition, columns and disclosure control (the runner's model of
`pipelines/oversight/marts/<mart>.yaml`), and how to load one from its files."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.validation.agreed_values import AgreedCategory

if TYPE_CHECKING:
    from schemas.contract import Contract

MARTS_DIR = Path(__file__).resolve().parent / "marts"


def marts_dir() -> Path:
    """Where the marts' files are: the folder `DATASHARE_MARTS` names (a copy of `marts/`
    that analysts keep and change), else the marts shipped here."""
    return Path(os.environ.get("DATASHARE_MARTS") or MARTS_DIR)


@dataclass(frozen=True)
class MartColumn:
    name: str
    type: str  # DuckDB type
    description: str


@dataclass(frozen=True)
class Suppression:
    """Withhold `count` (and the columns derived from it) when it is from 1 to threshold-1.

    `flag` adds the boolean column `<count>_suppressed` after the count. A hidden count
    (a helper column of the SQL whose name starts with `_`, such as the White reference
    group's count on every row) withholds its dependants without a flag of its own.
    """

    count: str
    withheld: tuple[str, ...]
    flag: bool = True

    @property
    def flag_name(self) -> str:
        return f"{self.count}_suppressed"


@dataclass(frozen=True)
class Incremental:
    """How a mart may be recomputed for only the months a run changed (its YAML's
    `incremental`), rather than from every month of history.

    A row of the mart for month m reads only the curated rows of `contract` of months
    m - (window_months - 1) to m, and the rows of that contract of a period are all of that
    month (`month_of_row`, SQL over the contract's curated row, equals the period's month:
    the contract's in-period rule; the runner checks the months it reads and recomputes
    everything when a row breaks it). `same_values`: columns whose set of values the SQL
    takes from the whole history (every month shows every group ever seen); a recomputed
    slice that shows another set means a full recompute.

    The other kind, by period (`period_column` set): a row of the mart for contract c
    (`contract_column`, or `contract` itself when that names one contract) and period p
    (`period_column`, the text `YYYY-MM` of `_period`) reads only the curated rows of c
    whose `_period` is p, so a run recomputes only the periods whose deliveries changed, of
    any source contract (`contract: '*'`: every contract the mart reads). No month window,
    no row-month rule: a period's rows are exactly those its `_period` names.
    """

    contract: str
    month_column: str = ""
    window_months: int = 1
    month_of_row: str = ""
    same_values: tuple[str, ...] = ()
    period_column: str = ""
    contract_column: str = ""

    @property
    def by_period(self) -> bool:
        """Whether rows are recomputed by (contract, period) rather than by month window."""
        return bool(self.period_column)


@dataclass(frozen=True)
class Mart:
    name: str
    title: str
    definition: str
    grain: str
    numerator: str
    denominator: str
    source_fields: tuple[str, ...]
    caveats: tuple[str, ...]
    sources: tuple[str, ...]  # contracts whose curated tables it reads (`*`: all)
    columns: tuple[MartColumn, ...]
    sql: Callable[[Any, dict[str, Contract]], str]
    order_by: tuple[str, ...]
    publication: bool
    threshold: int | None  # counts from 1 to threshold-1 are withheld (publication marts)
    disclosure: str  # why this threshold (or none)
    suppressions: tuple[Suppression, ...] = ()
    # SQL over the mart (as `mart`) picking its latest figures for previews.
    latest: str = "SELECT * FROM mart"
    # SQL over the mart (as `mart`) giving one row of headline numbers for the asset metadata.
    headline: str | None = None
    # Scalar SQL over the curated tables: figures the mart's caveats refer to.
    notes: dict[str, str] = field(default_factory=dict)
    # Columns holding a contract's agreed values (or NOT_AGREED), for the pack's notes.
    agreed: tuple[AgreedCategory, ...] = ()
    # Whether (and how) a run may recompute only the months it changed.
    incremental: Incremental | None = None

    def agreed_category(self, column: str) -> AgreedCategory | None:
        """The agreed-values declaration of `column`, if it has one."""
        return next((a for a in self.agreed if a.mart_column == column), None)

    def source_contracts(self, contracts: dict[str, Contract]) -> tuple[str, ...]:
        """The contracts whose curated tables the mart reads (`*`: every contract)."""
        if self.sources == ("*",):
            return tuple(contracts)
        return tuple(dict.fromkeys(s.removesuffix("_releases") for s in self.sources))

    @property
    def output_columns(self) -> tuple[MartColumn, ...]:
        """The mart's columns, each suppression flag right after its count."""
        flags = {s.count: s for s in self._active_suppressions() if s.flag}
        out: list[MartColumn] = []
        for col in self.columns:
            out.append(col)
            if col.name in flags:
                out.append(
                    MartColumn(
                        flags[col.name].flag_name,
                        "BOOLEAN",
                        f"True when {col.name} is from 1 to {self.threshold - 1} and so is "
                        f"withheld for disclosure control: {col.name} and the figures derived "
                        "from it are then NULL, not zero.",
                    )
                )
        return tuple(out)

    def _active_suppressions(self) -> tuple[Suppression, ...]:
        return self.suppressions if self.publication and self.threshold else ()

    def column_comment(self, column: MartColumn) -> str:
        withheld_by = [
            s.count
            for s in self._active_suppressions()
            if column.name in s.withheld and s.count != column.name and s.flag
        ]
        text = column.description
        if withheld_by:
            text += f" NULL when {' or '.join(c + '_suppressed' for c in withheld_by)}."
        return text

    @property
    def disclosure_text(self) -> str:
        if self.publication and self.threshold:
            return (
                f"Meant for publication: counts from 1 to {self.threshold - 1} are withheld "
                f"(NULL, with a `_suppressed` flag), never shown as zero. {self.disclosure} "
                "Primary suppression only: where a total and all but one of its parts are "
                "shown, the withheld part can be worked out, so check before publishing a "
                "new cut of the figures."
            )
        if self.publication:
            return f"Meant for publication without suppression. {self.disclosure}"
        return f"Internal: not for publication. {self.disclosure}"

    @property
    def comment(self) -> str:
        """The table comment: the measure's whole definition."""
        parts = [
            f"{self.title}. {self.definition}",
            f"Grain: {self.grain}.",
            f"Numerator: {self.numerator}",
            f"Denominator: {self.denominator}",
            f"Source fields: {', '.join(self.source_fields)}.",
            "Caveats: " + " ".join(self.caveats),
            f"Disclosure: {self.disclosure_text}",
        ]
        return "\n".join(parts)


# --- marts as files -----------------------------------------------------------------------


@dataclass(frozen=True)
class SqlFile:
    """A mart's SQL, read from its file each time it runs (an analyst's edit counts at once).

    The file is a query that runs as it is in DuckDB against the warehouse; a trailing `;`
    is dropped so the runner can wrap it.
    """

    path: Path

    def __call__(self, _mappings: object = None, _contracts: object = None) -> str:
        return self.path.read_text(encoding="utf-8").strip().rstrip(";").rstrip()


def load_mart(yaml_path: Path) -> Mart:
    """The mart described by `<mart>.yaml`, whose SQL is `<mart>.sql` beside it."""
    # libyaml's safe loader when there: every process that imports the runner reads all the
    # marts' files, and the pure-Python loader took 0.04 s of CPU for them.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(yaml_path.read_text(encoding="utf-8"), Loader=loader)
    name = spec["name"]
    if name != yaml_path.stem:
        raise ValueError(f"{yaml_path}: name {name!r} is not the file's name")
    sql_path = yaml_path.with_suffix(".sql")
    if not sql_path.exists():
        raise ValueError(f"{yaml_path}: no {sql_path.name} beside it")
    # Every column says what it holds: the text becomes its comment in the warehouse.
    undescribed = [
        c.get("name") for c in spec["columns"] if not str(c.get("description") or "").strip()
    ]
    if undescribed:
        raise ValueError(f"{yaml_path}: columns without a description: {undescribed}")
    incremental = _incremental(yaml_path, spec)
    return Mart(
        name=name,
        title=spec["title"],
        definition=spec["definition"],
        grain=spec["grain"],
        numerator=spec["numerator"],
        denominator=spec["denominator"],
        source_fields=tuple(spec.get("source_fields") or ()),
        caveats=tuple(spec.get("caveats") or ()),
        sources=tuple(spec["sources"]),
        columns=tuple(MartColumn(c["name"], c["type"], c["description"]) for c in spec["columns"]),
        sql=SqlFile(sql_path),
        order_by=tuple(spec["order_by"]),
        publication=bool(spec["publication"]),
        threshold=spec.get("threshold"),
        disclosure=spec.get("disclosure") or "",
        suppressions=tuple(
            Suppression(s["count"], tuple(s["withheld"]), bool(s.get("flag", True)))
            for s in spec.get("suppressions") or ()
        ),
        latest=spec.get("latest") or "SELECT * FROM mart",
        headline=spec.get("headline"),
        notes=dict(spec.get("notes") or {}),
        agreed=tuple(
            AgreedCategory(a["mart_column"], a["contract"], tuple(a["columns"]), a["label"])
            for a in spec.get("agreed") or ()
        ),
        incremental=incremental,
    )


def _incremental(yaml_path: Path, spec: dict) -> Incremental | None:
    """The mart's `incremental` declaration, checked against its columns and order."""
    raw = spec.get("incremental")
    if not raw:
        return None
    if raw.get("period_column"):
        return _incremental_by_period(yaml_path, spec, raw)
    inc = Incremental(
        contract=str(raw["contract"]),
        month_column=str(raw["month_column"]),
        window_months=int(raw["window_months"]),
        month_of_row=str(raw["month_of_row"]),
        same_values=tuple(raw.get("same_values") or ()),
    )
    columns = {c["name"] for c in spec["columns"]}
    order = list(spec["order_by"])
    # Recomputed months are merged by the order's leading columns, which must be columns
    # of the mart and end with the month: whole months then never interleave.
    if inc.month_column not in order or not set(order[: order.index(inc.month_column)]) <= columns:
        raise ValueError(
            f"{yaml_path}: incremental: order_by must begin with columns of the mart up to "
            f"{inc.month_column!r}"
        )
    if inc.contract not in spec["sources"] or inc.window_months < 1:
        raise ValueError(f"{yaml_path}: incremental: contract must be a source, window >= 1")
    unknown = set(inc.same_values) - columns
    if unknown:
        raise ValueError(f"{yaml_path}: incremental: same_values {sorted(unknown)} not columns")
    return inc


def _incremental_by_period(yaml_path: Path, spec: dict, raw: dict) -> Incremental:
    """An `incremental` declaration by period, checked against the mart's columns, order
    and sources."""
    inc = Incremental(
        contract=str(raw["contract"]),
        period_column=str(raw["period_column"]),
        contract_column=str(raw.get("contract_column") or ""),
    )
    columns = {c["name"] for c in spec["columns"]}
    keys = {inc.period_column, inc.contract_column} - {""}
    if not keys <= columns or not keys <= set(spec["order_by"]):
        raise ValueError(
            f"{yaml_path}: incremental: {sorted(keys)} must be columns of the mart and in "
            "its order_by"
        )
    every_contract = list(spec["sources"]) == ["*"]
    if inc.contract == "*" and not inc.contract_column:
        raise ValueError(
            f"{yaml_path}: incremental: contract '*' needs the contract_column naming each "
            "row's contract"
        )
    if inc.contract != "*" and not (every_contract or inc.contract in spec["sources"]):
        raise ValueError(f"{yaml_path}: incremental: contract must be a source, or '*'")
    return inc


def load_marts(directory: Path = MARTS_DIR) -> dict[str, Mart]:
    """Every mart with a `<mart>.yaml` (and its `.sql`) in `directory`, by name."""
    return {p.stem: load_mart(p) for p in sorted(directory.glob("*.yaml"))}


def mart_yaml(mart: Mart) -> str:
    """The YAML that describes `mart` (all but its SQL), as `load_mart` reads it."""

    def block(dumper: yaml.Dumper, text: str) -> yaml.Node:
        style = "|" if "\n" in text else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, block)
    spec: dict[str, object] = {
        "name": mart.name,
        "title": mart.title,
        "definition": mart.definition,
        "grain": mart.grain,
        "numerator": mart.numerator,
        "denominator": mart.denominator,
        "source_fields": list(mart.source_fields),
        "caveats": list(mart.caveats),
        "sources": list(mart.sources),
        "publication": mart.publication,
        "threshold": mart.threshold,
        "disclosure": mart.disclosure,
        "suppressions": [
            {"count": s.count, "withheld": list(s.withheld), "flag": s.flag}
            for s in mart.suppressions
        ],
        "agreed": [
            {
                "mart_column": a.mart_column,
                "contract": a.contract,
                "columns": list(a.columns),
                "label": a.label,
            }
            for a in mart.agreed
        ],
        "order_by": list(mart.order_by),
        **({"incremental": _incremental_yaml(mart.incremental)} if mart.incremental else {}),
        "latest": textwrap.dedent(mart.latest).strip() + ("\n" if "\n" in mart.latest else ""),
        "headline": textwrap.dedent(mart.headline).strip() + "\n" if mart.headline else None,
        "notes": {k: textwrap.dedent(v).strip() + "\n" for k, v in mart.notes.items()},
        "columns": [
            {"name": c.name, "type": c.type, "description": c.description} for c in mart.columns
        ],
    }
    return yaml.dump(spec, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=92)


def _incremental_yaml(inc: Incremental) -> dict[str, object]:
    if inc.by_period:
        by_period = {"contract": inc.contract, "contract_column": inc.contract_column}
        return {k: v for k, v in by_period.items() if v} | {"period_column": inc.period_column}
    out: dict[str, object] = {
        "contract": inc.contract,
        "month_column": inc.month_column,
        "window_months": inc.window_months,
        "month_of_row": inc.month_of_row,
    }
    if inc.same_values:
        out["same_values"] = list(inc.same_values)
    return out
