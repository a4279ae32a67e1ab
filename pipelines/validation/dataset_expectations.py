"""Dataset-level expectations for one delivery, run by great-expectations over a small profile.

Row checks run elsewhere (pandera polars over bounded batches, see row_validation). Here the
delivery is judged as a whole (DESIGN.md, "Engine choices"): volume against the contract's
history, completeness against the agreed thresholds and the mix of categories against the
history. great-expectations never sees the rows: it validates a tiny pandas frame built from
a `DeliveryProfile` (one row per figure, or per category), and writes Data Docs (HTML) for the
validation into the lake.

Breaches are returned for volume and category mix only: completeness is already reported by
the row validation pass; here it is expressed as expectations so that it appears in Data Docs.
Classified fields are named but their category values never appear, in breach details or in
Data Docs (there they read "category 1", "category 2", ...).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.lake.register import Breach
    from pipelines.lake.store import Lake
    from schemas.contract import Contract

log = logging.getLogger(__name__)

VOLUME_HISTORY = 12  # previous published deliveries the median is taken over
VOLUME_MIN_HISTORY = 3  # fewer than this and volume is not judged
# Share of the median rows allowed: more than half, at most one and a half. Half is out:
# a month sent as two halves, of which only one is published, is exactly half its usual size.
VOLUME_LOW, VOLUME_HIGH = 0.5, 1.5
MIX_TOLERANCE_POINTS = 10.0  # a category's share may move this many percentage points

SITE = "lake"
MONTH_OF_PARTS = "rows of the month's parts"  # the volume judged for a month in parts


@dataclass
class DeliveryProfile:
    """The few figures the dataset checks need, counted by the validation pass."""

    rows_delivered: int
    missing: dict[str, int] = field(default_factory=dict)  # curated column -> rows missing
    value_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> value -> n


def profile_from_counts(
    contract: Contract,
    rows_delivered: int,
    missing_counts: dict[str, int] | None = None,
    value_counts: dict[str, dict[Any, int]] | None = None,
) -> DeliveryProfile:
    """Build a profile from counts the validation pass already has.

    `missing_counts` may be keyed by completeness rule name (as `validate_delivery` keeps
    them) or by curated column name; `value_counts` by curated or source column name. Only
    the contract's categorical columns (those with value rules) are kept.
    """
    by_rule = {r.name: r.column for r in contract.completeness_rules}
    missing: dict[str, int] = {}
    for key, count in (missing_counts or {}).items():
        column = by_rule.get(key, key)
        missing[column] = missing.get(column, 0) + int(count or 0)
    categorical = {c.name: c.name for c in contract.columns if c.value_rules}
    categorical.update({c.source_name: c.name for c in contract.columns if c.value_rules})
    counts: dict[str, dict[str, int]] = {}
    for key, values in (value_counts or {}).items():
        column = categorical.get(key)
        if column is None:
            continue
        merged = counts.setdefault(column, {})
        for value, count in (values or {}).items():
            label = "" if value is None else str(value)
            merged[label] = merged.get(label, 0) + int(count or 0)
    return DeliveryProfile(int(rows_delivered or 0), missing, counts)


def non_blank_values(profile: DeliveryProfile) -> dict[str, int]:
    """How many non-blank values each categorical column has (its mix is a share of these)."""
    return {
        column: sum(n for value, n in counts.items() if value != "")
        for column, counts in profile.value_counts.items()
    }


def category_mix(profile: DeliveryProfile) -> dict[str, dict[str, float]]:
    """Each category's share (0-1) of the counted values of its column."""
    mix = {}
    for column, counts in profile.value_counts.items():
        total = sum(counts.values())
        if total > 0:
            mix[column] = {value: n / total for value, n in counts.items()}
    return mix


@dataclass
class _Check:
    """One expectation: `value` must lie in [low, high]. GE evaluates it; words come from here."""

    check: str  # volume | completeness | mix
    subject: str  # the column judged ("delivery" for volume)
    label: str  # category as shown in Data Docs (masked for classified columns)
    value: float
    low: float
    high: float
    category: str = ""  # the real category (never shown for classified columns)
    before: float = 0.0  # mix: history share (percent)
    now: float = 0.0  # mix: this delivery's share (percent)
    strict_low: bool = False  # `value` must be above `low`, not at it (volume)

    @property
    def passed(self) -> bool:
        above = self.low < self.value if self.strict_low else self.low <= self.value
        return above and self.value <= self.high


def _previous_rows(history: list[dict], period: str, delivery_id: str) -> list[int]:
    """Rows of each of the last `VOLUME_HISTORY` earlier periods: a period's published
    deliveries added together (a month in parts has several)."""
    earlier = [
        h
        for h in history or []
        if isinstance(h, dict)
        and h.get("rows_delivered") is not None
        and h.get("delivery_id") != delivery_id
        and str(h.get("period", "")) < str(period)
    ]
    by_period: dict[str, int] = {}
    for h in earlier:
        try:
            rows = int(h["rows_delivered"])
        except (TypeError, ValueError):
            continue
        key = str(h.get("period", ""))
        by_period[key] = by_period.get(key, 0) + rows
    return [by_period[p] for p in sorted(by_period)[-VOLUME_HISTORY:]]


def _checks(
    contract: Contract,
    profile: DeliveryProfile,
    previous: list[int],
    history_mix: dict[str, dict[str, float]] | None,
    history_values: dict[str, float] | None = None,
    month_rows: int | None = None,
) -> list[_Check]:
    checks: list[_Check] = []
    rows = profile.rows_delivered
    if len(previous) >= VOLUME_MIN_HISTORY:
        median = float(statistics.median(previous))
        low, high = VOLUME_LOW * median, VOLUME_HIGH * median
        # A month in parts is judged as a whole: this part and the parts standing with it.
        label = "rows delivered" if month_rows is None else MONTH_OF_PARTS
        judged = rows if month_rows is None else month_rows
        checks.append(
            _Check("volume", "delivery", label, judged, low, high, before=median, strict_low=True)
        )
    if rows > 0:
        for rule in contract.completeness_rules:
            if rule.column in profile.missing:
                percent = 100.0 * profile.missing[rule.column] / rows
                checks.append(
                    _Check("completeness", rule.column, rule.name, percent, 0.0, rule.max_percent)
                )
    classified = set(contract.classified)
    now_mix = category_mix(profile)
    now_values = non_blank_values(profile)
    least = contract.mix_minimum_values
    for column, before_mix in (history_mix or {}).items():
        now = now_mix.get(column)
        if not now or not before_mix:
            continue
        # A share of a nearly empty column means nothing (one value in twelve is "8.3%"):
        # judged only over enough values this month and in the history's average month.
        before_values = (history_values or {}).get(column)
        if now_values.get(column, 0) < least or (
            history_values is not None and (before_values or 0) < least
        ):
            continue
        categories = sorted(set(now) | set(before_mix))
        for i, category in enumerate(categories, start=1):
            before_pct = 100.0 * float(before_mix.get(category, 0.0) or 0.0)
            now_pct = 100.0 * now.get(category, 0.0)
            label = f"category {i}" if column in classified else category
            moved = round(now_pct - before_pct, 6)
            tol = MIX_TOLERANCE_POINTS
            checks.append(
                _Check("mix", column, label, moved, -tol, tol, category, before_pct, now_pct)
            )
    return checks


class _Session:
    """One great-expectations context per process, in memory, with a pandas data source and
    one profile asset per contract.

    Making a context and its data source, asset and checkpoint for every delivery cost a
    fifth of a run. A delivery adds its suite and validation definition, and its result,
    and removes them when its pages are written: names never meet the next delivery's, and
    the context does not grow with the deliveries a process checks. Its Data Docs site is
    not the context's: each delivery's site builder is made from its config and builds its
    pages directly (`_validate`).
    """

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        # In memory, no progress bars, and no default docs site in a fresh temporary directory.
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        _lighten_gx()  # once per process (a second session finds it done)
        self.source = self.context.data_sources.add_pandas("delivery_profile")
        self.batches: dict[str, Any] = {}

    def batch(self, contract: str):
        """The whole-frame batch definition of `contract`'s profile."""
        if contract not in self.batches:
            asset = self.source.add_dataframe_asset(f"{contract}_profile")
            self.batches[contract] = asset.add_batch_definition_whole_dataframe("delivery")
        return self.batches[contract]


# -- great-expectations' per-expectation overhead ------------------------------------------
# A 12-expectation delivery cost 0.2 s of CPU (0.05 s for 3), most of it GX's bookkeeping,
# not its checks: each expectation's `configuration` (a pydantic round trip) was built again
# for every key of every kwargs lookup (about 120 times per expectation), and its row
# condition, the same pandas query, parsed and run again for each of its 5 metrics. GX
# 1.24's own methods are replaced here by ones that build the configuration once per lookup
# and run each query once per profile: the same kwargs and the same rows, so the same
# verdicts and pages (tests/test_dataset_expectations.py compares them with GX's own).
GX_TUNED_FOR = "1.24."  # another version is left as it is (slower, never different)


def _domain_kwargs(expectation: Any, kwargs: dict) -> dict:
    return {k: kwargs.get(k, expectation._get_default_value(k)) for k in expectation.domain_keys}


def _success_kwargs(expectation: Any, kwargs: dict) -> dict:
    domain = _domain_kwargs(expectation, kwargs)
    success = {
        k: kwargs.get(k, expectation._get_default_value(k)) for k in expectation.success_keys
    }
    success.update(domain)
    return success


def _runtime_kwargs(expectation: Any, runtime_configuration: dict | None = None) -> dict:
    """GX's `Expectation._get_runtime_kwargs`, its configuration built once."""
    from great_expectations.expectations import expectation as gx_expectation

    runtime_configuration = runtime_configuration or {}
    kwargs = expectation.configuration.kwargs
    success = _success_kwargs(expectation, kwargs)
    fields = expectation.__fields__
    runtime = {}
    for key in expectation.runtime_keys:
        if key in kwargs:
            value = kwargs[key]
        elif key in fields:
            value = None if fields[key].required else fields[key].default
        else:  # what GX says of an unknown key
            value = gx_expectation.Expectation._get_success_kwarg(expectation, key)
        runtime[key] = runtime_configuration.get(key, value)
    runtime.update(success)
    runtime["result_format"] = gx_expectation.parse_result_format(runtime["result_format"])
    return runtime


def _filtered_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """The pandas engine's row-condition filter, each (condition, parser) queried once per
    frame: the frame of the last profile and its filtered rows are kept on the engine, and
    a copy is handed out (as a query gives a new frame each time)."""

    def apply(engine: Any, data: Any, row_condition: Any, domain_kwargs: dict) -> Any:
        # GX hands the condition on as a dict of strings ({"type": "pass_through", ...}).
        condition = row_condition.items() if isinstance(row_condition, dict) else ()
        if not condition or not all(isinstance(v, str) for _, v in condition):
            return real(engine, data, row_condition, domain_kwargs)
        kept = engine.__dict__.get("_datashare_filtered")
        if kept is None or kept[0] is not data:
            kept = (data, {})
            engine.__dict__["_datashare_filtered"] = kept
        key = (tuple(sorted(condition)), domain_kwargs.get("condition_parser"))
        if key not in kept[1]:
            kept[1][key] = real(engine, data, row_condition, domain_kwargs)
        return kept[1][key].copy()

    apply.__wrapped__ = real  # type: ignore[attr-defined]
    return apply


_GX_OWN: dict[tuple[type, str], Any] = {}  # GX's own methods, replaced by `_lighten_gx`


def _lighten_gx() -> bool:
    """Replace GX's per-expectation bookkeeping by the lighter equivalents above, once per
    process (GX's own are kept in `_GX_OWN`); False, GX left as it is, for a version they
    were not written against."""
    import great_expectations as gx
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import Expectation

    if not gx.__version__.startswith(GX_TUNED_FOR):
        return False
    if not _GX_OWN:
        lighter = {
            (Expectation, "_get_runtime_kwargs"): _runtime_kwargs,
            (Expectation, "_get_success_kwargs"): lambda self: _success_kwargs(
                self, self.configuration.kwargs
            ),
            (Expectation, "_get_domain_kwargs"): lambda self: _domain_kwargs(
                self, self.configuration.kwargs
            ),
            (PandasExecutionEngine, "_apply_row_condition_filter"): _filtered_once(
                PandasExecutionEngine._apply_row_condition_filter
            ),
        }
        for (cls, name), method in lighter.items():
            _GX_OWN[(cls, name)] = cls.__dict__[name]
            setattr(cls, name, method)
    return True


_SESSION: _Session | None = None
_SESSION_LOCK = threading.Lock()  # a GX context is not made for two threads at once


def warm_session() -> None:
    """Import great-expectations and make this process's context now, before any delivery
    needs it (what the helper of `ge_process` does first, while the run takes files in)."""
    with _SESSION_LOCK:
        _session()


def _session() -> _Session:
    """This process's context, made on first use (the caller holds `_SESSION_LOCK`)."""
    global _SESSION
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if _SESSION is None:
        _SESSION = _Session()
    return _SESSION


def _start_ge(
    contract: Contract,
    period: str,
    delivery_id: str,
    checks: list[_Check],
    site: Path,
    static: str,
) -> tuple[Callable[[], tuple[dict[tuple[str, str], bool], Path | None]], Any]:
    """Validate the checks with great-expectations and write Data Docs to `site`, linking
    the shared static files at `static` (relative to `site`, see `data_docs`): the function
    returned gives GE's verdict per (check, subject) expectation and the validation page.

    Sent at once to the run's great-expectations process when one was started
    (`ge_process`), which has imported it meanwhile: the function returned waits for its
    answer. Here otherwise, or if that process failed (the log says so), when the function
    is called. Also returns the task sent (`ge_process.Pending`), or None if none was."""
    from pipelines.validation import ge_process

    args = (contract.name, period, delivery_id, checks, site, static)
    if ge_process.running():
        try:
            pending = ge_process.submit(_run_ge_here, *args)
        except ge_process.HelperFailed as exc:
            log.error("%s; checking %s in this process instead", exc, delivery_id)
        else:

            def answer() -> tuple[dict[tuple[str, str], bool], Path | None]:
                try:
                    return pending.result()
                except ge_process.HelperFailed as exc:
                    log.error("%s; checking %s in this process instead", exc, delivery_id)
                return _run_ge_here(*args)

            return answer, pending
    return (lambda: _run_ge_here(*args)), None


def _run_ge_here(
    contract: str,
    period: str,
    delivery_id: str,
    checks: list[_Check],
    site: Path,
    static: str,
) -> tuple[dict[tuple[str, str], bool], Path | None]:
    """`_start_ge`'s work in this process, for `contract` (its name)."""
    global _SESSION
    with _SESSION_LOCK:
        try:
            return _validate(_session(), contract, period, delivery_id, checks, site, static)
        except Exception:
            _SESSION = None  # a context left half-changed is not used again
            raise


def _validate(
    session: _Session,
    contract: str,
    period: str,
    delivery_id: str,
    checks: list[_Check],
    site: Path,
    static: str,
) -> tuple[dict[tuple[str, str], bool], Path | None]:
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.data_context.util import instantiate_class_from_config

    from pipelines.validation import data_docs, docs_static

    context = session.context
    label = docs_static.data_asset_label(contract, period, delivery_id)
    # The delivery's site builder, made from its config as GX's `build_data_docs` makes it,
    # but not kept in the context's config: changing a site there saved the whole project
    # config each time, and `build_data_docs` and `get_docs_sites_urls` each made a builder
    # again (together a tenth of a delivery's checks).
    builder = instantiate_class_from_config(
        config=data_docs.site_config(site, static, label),
        runtime_environment={
            "data_context": context,
            "root_directory": context.root_directory,
            "site_name": SITE,
        },
        config_defaults={"module_name": "great_expectations.render.renderer.site_builder"},
    )
    # One key column: each expectation's rows are picked by one equality, and GX filters
    # the frame for every metric it computes.
    frame = pd.DataFrame(
        {
            "key": [f"{c.check}:{c.subject}" for c in checks],
            "value": [float(c.value) for c in checks],
        },
        columns=["key", "value"],
    ).astype({"key": "object", "value": "float64"})
    expectations = []
    keys: list[tuple[str, str]] = []
    for check in checks:
        key = (check.check, check.subject)
        if key in keys:
            continue
        keys.append(key)
        if check.check == "volume":
            notes = (
                f"Rows delivered between {check.low:,.0f} and {check.high:,.0f}, the first "
                f"not included: more than {VOLUME_LOW:g} and at most {VOLUME_HIGH:g} times the "
                f"median of the previous published deliveries ({check.before:,.0f} rows)."
            )
        elif check.check == "completeness":
            notes = (
                f"Percent of rows with no {check.subject}: between 0 and {check.high:g} "
                "(agreed threshold; reported as a breach by the row validation pass)."
            )
        else:
            notes = (
                f"Change in each {check.subject} category's share against the history, "
                f"in percentage points: between -{MIX_TOLERANCE_POINTS:g} and "
                f"{MIX_TOLERANCE_POINTS:g}."
            )
        expectations.append(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="value",
                min_value=check.low,
                max_value=check.high,
                strict_min=check.strict_low,
                row_condition=f'key=="{check.check}:{check.subject}"',
                condition_parser="pandas",
                description=notes,
                meta={"check": check.check, "subject": check.subject},
            )
        )
    with contextlib.ExitStack() as cleanup:
        # The suite whole, in one write (each `add_expectation` writes the suite again).
        suite = context.suites.add(
            gx.ExpectationSuite(name=f"{contract}_dataset", expectations=expectations)
        )
        cleanup.callback(context.suites.delete, suite.name)
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=session.batch(contract), suite=suite)
        )
        cleanup.callback(context.validation_definitions.delete, validation.name)
        run_id = RunIdentifier(run_name=delivery_id)
        # Run and build the docs directly: a checkpoint would only add its freshness checks
        # around the same two steps.
        result = validation.run(
            batch_parameters={"dataframe": frame},
            # Observed values and the first unexpected rows, without the index lists that
            # SUMMARY adds: the profile has a few dozen rows, and each metric is a step.
            result_format={"result_format": "BASIC"},
            run_id=run_id,
        )
        identifier = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
            run_id=run_id,
            batch_identifier=result.batch_id,
        )
        cleanup.callback(context.validation_results_store.remove_key, identifier)
        builder.build(resource_identifiers=[identifier])
        url = builder.get_resource_url(resource_identifier=identifier, only_if_exists=True)
    verdicts: dict[tuple[str, str], bool] = {}
    for res in result.results:
        meta = res.expectation_config.meta or {}
        verdicts[(meta.get("check", ""), meta.get("subject", ""))] = bool(res.success)
    page: Path | None = None
    if url and url.startswith("file://"):
        page = Path(url.removeprefix("file://"))
    if page is None or not page.exists():
        page = site / "index.html" if (site / "index.html").exists() else None
    return verdicts, page


def _fallback_page(contract: Contract, period: str, delivery_id: str, checks, site: Path) -> Path:
    """A plain HTML page of the same checks, if great-expectations could not run."""
    rows = "".join(
        f"<tr><td>{html.escape(c.check)}</td><td>{html.escape(c.subject)}</td>"
        f"<td>{html.escape(c.label)}</td><td>{c.value:,.2f}</td>"
        f"<td>{c.low:,.2f} to {c.high:,.2f}</td><td>{'pass' if c.passed else 'FAIL'}</td></tr>"
        for c in checks
    )
    page = site / "index.html"
    site.mkdir(parents=True, exist_ok=True)
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>Dataset checks</title>"
        f"<h1>{html.escape(contract.name)} {html.escape(period)} {html.escape(delivery_id)}</h1>"
        "<p>great-expectations could not run; the same expectations evaluated directly.</p>"
        "<table border='1'><tr><th>check</th><th>column</th><th>item</th><th>value</th>"
        f"<th>expected</th><th>result</th></tr>{rows}</table>",
        encoding="utf-8",
    )
    return page


def check_dataset(
    contract: Contract,
    period: str,
    delivery_id: str,
    profile: DeliveryProfile,
    history: list[dict],
    lake: Lake,
    history_mix: dict[str, dict[str, float]] | None = None,
    history_values: dict[str, float] | None = None,
    month_rows: int | None = None,
) -> tuple[list[Breach], str | None]:
    """Judge one delivery as a whole; return volume and mix breaches and a link to its Data
    Docs page, kept in the lake under `docs/`.

    `history`: previous deliveries as dicts with `period` and `rows_delivered` (published
    ones; later periods and this delivery are ignored). `history_mix`: column -> category ->
    share (0-1) across the history, as `category_mix` gives; mix is not judged without it.
    `history_values`: column -> the history's average number of non-blank values. A mix
    change is judged only over at least the contract's `mixMinimumValues` values in this
    delivery and (when known) in the history's average month. `month_rows`: for a month
    in parts, the rows of this part and the parts standing with it; volume judges those.
    Never raises: if great-expectations fails, the same checks are evaluated directly and a
    plain HTML page is written instead.
    """
    return start_dataset_checks(
        contract, period, delivery_id, profile, history, lake, history_mix, history_values,
        month_rows,
    ).result()  # fmt: skip


class DatasetChecks:
    """One delivery's dataset checks under way (`start_dataset_checks`): great-expectations
    works on them in the run's second process while this one goes on; `result()` waits for
    its verdicts and page, and `cancel()` drops them (the page is not kept)."""

    def __init__(
        self,
        contract: Contract,
        period: str,
        delivery_id: str,
        profile: DeliveryProfile,
        checks: list[_Check],
        lake: Lake,
        folder: str,
    ) -> None:
        self.contract, self.period, self.delivery_id = contract, period, delivery_id
        self.profile, self.checks, self.lake, self.folder = profile, checks, lake, folder
        self.site: Path | None = None
        self._answer: Callable[[], tuple[dict[tuple[str, str], bool], Path | None]] | None
        self._answer = None
        self._sent: Any = None  # the task sent to the great-expectations process, if one was
        self._writing = contextlib.ExitStack()
        self._done: tuple[list[Breach], str | None] | None = None

    def _start(self, static: str) -> None:
        try:
            self.site = self._writing.enter_context(self.lake.writing_folder(self.folder))
        except OSError:
            log.exception("the Data Docs of %s could not be kept", self.delivery_id)
            return
        self._answer, self._sent = _start_ge(
            self.contract, self.period, self.delivery_id, self.checks, self.site, static
        )

    def result(self) -> tuple[list[Breach], str | None]:
        """The volume and mix breaches and the link to the Data Docs page, once
        great-expectations has judged the checks (the same checks judged directly, and a
        plain page, if it failed)."""
        if self._done is not None:
            return self._done
        verdicts: dict[tuple[str, str], bool] = {}
        link: str | None = None
        if self.site is not None:
            site = self.site
            try:
                with self._writing:
                    try:
                        assert self._answer is not None
                        verdicts, page = self._answer()
                    except Exception:
                        log.exception(
                            "great-expectations failed for %s; checking directly",
                            self.delivery_id,
                        )
                        page = _fallback_page(
                            self.contract, self.period, self.delivery_id, self.checks, site
                        )
                    if page is not None:
                        link = self.lake.uri(f"{self.folder}/{page.relative_to(site).as_posix()}")
            except OSError:
                log.exception("the Data Docs of %s could not be kept", self.delivery_id)
        self._done = (
            _breaches(
                self.contract, self.period, self.delivery_id, self.profile, self.checks, verdicts
            ),
            link,
        )
        return self._done

    def ready(self) -> bool:
        """Whether `result()` would not wait for the great-expectations process: its answer
        has come (or the process is gone), or no task was sent to it."""
        return self._done is not None or self._sent is None or self._sent.ready()

    def cancel(self) -> None:
        """Drop the checks of a delivery whose month will not be recorded: wait for
        great-expectations to finish with its folder, then leave the folder unwritten."""
        if self._done is not None or self.site is None:
            return
        with contextlib.suppress(Exception):
            if self._sent is not None:  # nothing is run here only to be dropped
                self._sent.result()
        with contextlib.suppress(Exception):
            self._writing.__exit__(_Cancelled, _Cancelled(), None)
        self._done = ([], None)


class _Cancelled(Exception):
    """Thrown into the Data Docs folder being written, so that it is not kept."""


def start_dataset_checks(
    contract: Contract,
    period: str,
    delivery_id: str,
    profile: DeliveryProfile,
    history: list[dict],
    lake: Lake,
    history_mix: dict[str, dict[str, float]] | None = None,
    history_values: dict[str, float] | None = None,
    month_rows: int | None = None,
) -> DatasetChecks:
    """`check_dataset` begun: the checks are sent to the run's great-expectations process,
    if one was started, and this process goes on; `result()` of what is returned waits for
    them. Without that process they run when `result()` is called. Never raises."""
    try:
        checks = _checks(
            contract,
            profile,
            _previous_rows(history, period, delivery_id),
            history_mix,
            history_values,
            month_rows,
        )
    except Exception:  # odd input: judge nothing rather than stop the pipeline
        log.exception("dataset checks could not be prepared for %s", delivery_id)
        judged = DatasetChecks(contract, period, delivery_id, profile, [], lake, "")
        judged._done = ([], None)
        return judged
    folder = lake.docs_dir(contract.name, period, delivery_id)
    judged = DatasetChecks(contract, period, delivery_id, profile, checks, lake, folder)
    static = ""
    try:
        # Here, without great-expectations (it may be loading in the run's other process).
        from pipelines.validation import docs_static

        static = docs_static.static_path(folder)
        docs_static.publish_static(lake)  # the pages' CSS and JS, one copy per lake
    except Exception:  # the pages still say everything, unstyled
        log.exception("the Data Docs static files could not be kept in %s", lake)
    judged._start(static)
    return judged


def _category(value: str) -> str:
    """A category as quoted in a breach: blank cells are counted under "" (say so)."""
    return f"'{value}'" if value else "blank (no value)"


def _breaches(
    contract: Contract,
    period: str,
    delivery_id: str,
    profile: DeliveryProfile,
    checks: list[_Check],
    verdicts: dict[tuple[str, str], bool],
) -> list[Breach]:
    # Imported here: the register brings DuckDB, which the great-expectations helper
    # process (it imports this module, and never judges breaches) has no use for.
    from pipelines.lake.register import Breach

    def failed(check: _Check) -> bool:
        verdict = verdicts.get((check.check, check.subject))  # GE's, per expectation
        if verdict is None:  # great-expectations did not run
            return not check.passed
        return not verdict and not check.passed  # the categories that broke a failed one

    common = dict(
        contract=contract.name,
        contract_version=contract.version,
        period=period,
        delivery_id=delivery_id,
        rows_checked=profile.rows_delivered,
    )
    where = f"{contract.path.name}: schema[{contract.name}]"
    found: list[Breach] = []
    for check in checks:
        if check.check != "volume" or not failed(check):
            continue
        rows, median = int(check.value), check.before
        what = "This month's parts have" if check.label == MONTH_OF_PARTS else "This delivery has"
        share = rows / median if median else 0.0
        direction = "fewer" if rows <= check.low else "more"
        found.append(
            Breach(
                **common,
                rule="dataset.volume",
                clause=f"{where} (expected volume, against the previous deliveries)",
                severity="major",
                action="delivery published",
                failing_rows=0,
                detail=f"{what} {rows:,} rows, {share:.0%} of the usual "
                f"{median:,.0f} (the median of the previous published deliveries); "
                f"the expected range is more than {check.low:,.0f} and at most "
                f"{check.high:,.0f} rows. "
                f"Far {direction} rows than usual: please confirm the extract is complete "
                "and covers the whole month.",
            )
        )
    classified = set(contract.classified)
    for column in dict.fromkeys(c.subject for c in checks if c.check == "mix"):
        moved = [c for c in checks if c.check == "mix" and c.subject == column and failed(c)]
        if not moved:
            continue
        col = contract.column(column)
        secret = column in classified
        if secret:
            worst = max(moved, key=lambda c: abs(c.value))
            words = (
                f"{len(moved)} categor{'y' if len(moved) == 1 else 'ies'} of "
                f"{col.source_name} (a classified field; values not shown) moved by more than "
                f"{MIX_TOLERANCE_POINTS:g} percentage points against the history; the largest "
                f"moved {abs(worst.value):.1f} points (from {worst.before:.1f}% to "
                f"{worst.now:.1f}% of rows)."
            )
        else:
            parts = [
                f"{_category(c.category)} {'rose' if c.value > 0 else 'fell'} from "
                f"{c.before:.1f}% to "
                f"{c.now:.1f}% ({abs(c.value):.1f} points)"
                for c in sorted(moved, key=lambda c: -abs(c.value))
            ]
            words = (
                f"The mix of {col.source_name} moved by more than {MIX_TOLERANCE_POINTS:g} "
                f"percentage points against the history: {'; '.join(parts)}."
            )
        found.append(
            Breach(
                **common,
                rule=f"dataset.mix.{column}",
                clause=f"{where}.properties[{column}] (category mix, against the history)",
                severity="minor",
                action="delivery published",
                failing_rows=0,
                detail=words + " Please check whether recording or coding changed at source.",
            )
        )
    return found
