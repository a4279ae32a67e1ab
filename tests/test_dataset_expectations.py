"""Dataset-level expectations (volume, completeness, category mix) with great-expectations."""

from __future__ import annotations

import html
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from pipelines.lake.store import FolderLake, S3Lake, open_lake
from pipelines.validation.dataset_expectations import (
    DeliveryProfile,
    category_mix,
    check_dataset,
    profile_from_counts,
)
from schemas.contract import load_contracts
from tests.s3_server import LAKE_BUCKET

HISTORY = [{"period": f"2023-{m:02d}", "rows_delivered": 1000 + 10 * m} for m in range(1, 13)]
USUAL = 1065  # median of the history above


def _file(link: str | None) -> Path:
    """The local file behind a Data Docs link (a folder lake gives `file://` links)."""
    assert link is not None and link.startswith("file://"), link
    return Path(unquote(urlparse(link).path))


def _visible_text(page: Path) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", page.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def _profile(contract, rows: int, type_counts=None, gender_counts=None) -> DeliveryProfile:
    return profile_from_counts(
        contract,
        rows,
        missing_counts={"age_range_completeness": rows // 10, "officer_defined_ethnicity": 0},
        value_counts={
            "Type": type_counts or {"Person search": rows},
            "gender": gender_counts or {"Male": rows // 2, "Female": rows - rows // 2},
            "Unlisted column": {"x": 1},
        },
    )


def test_profile_from_counts_keeps_categorical_columns(stop_and_search):
    profile = _profile(stop_and_search, 100)
    assert profile.rows_delivered == 100
    assert profile.missing == {"age_range": 10, "officer_defined_ethnicity": 0}
    assert set(profile.value_counts) == {"type", "gender"}
    assert category_mix(profile)["gender"] == {"Male": 0.5, "Female": 0.5}


def test_half_the_usual_volume_is_a_major_breach(stop_and_search, tmp_path: Path):
    lake = FolderLake(tmp_path / "lake")
    breaches, page = check_dataset(
        stop_and_search, "2024-01", "d-half", _profile(stop_and_search, 500), HISTORY, lake
    )
    assert [b.rule for b in breaches] == ["dataset.volume"]
    breach = breaches[0]
    assert breach.severity == "major"
    assert breach.rows_checked == 500
    assert "500 rows" in breach.detail
    assert "1,065" in breach.detail  # the usual volume
    assert "47%" in breach.detail
    assert _file(page).exists()


def test_normal_volume_and_steady_mix_are_no_breach(stop_and_search, tmp_path: Path):
    lake = FolderLake(tmp_path / "lake")
    history_mix = {"gender": {"Male": 0.52, "Female": 0.48}, "type": {"Person search": 1.0}}
    breaches, page = check_dataset(
        stop_and_search,
        "2024-01",
        "d-normal",
        _profile(stop_and_search, USUAL),
        HISTORY,
        lake,
        history_mix=history_mix,
    )
    assert breaches == []
    assert _file(page).exists()


def test_category_shift_of_30_points_is_a_minor_mix_breach(stop_and_search, tmp_path: Path):
    lake = FolderLake(tmp_path / "lake")
    profile = _profile(
        stop_and_search,
        1000,
        type_counts={"Person search": 500, "Vehicle search": 500},
    )
    history_mix = {"type": {"Person search": 0.8, "Vehicle search": 0.2}}
    breaches, _ = check_dataset(
        stop_and_search, "2024-01", "d-mix", profile, HISTORY, lake, history_mix=history_mix
    )
    assert [b.rule for b in breaches] == ["dataset.mix.type"]
    breach = breaches[0]
    assert breach.severity == "minor"
    assert "'Vehicle search' rose from 20.0% to 50.0% (30.0 points)" in breach.detail
    assert "'Person search' fell from 80.0% to 50.0%" in breach.detail


def test_classified_column_values_are_not_printed(stop_and_search, tmp_path: Path):
    assert "gender" in stop_and_search.classified
    lake = FolderLake(tmp_path / "lake")
    profile = _profile(stop_and_search, 1000, gender_counts={"Male": 800, "Female": 200})
    history_mix = {"gender": {"Male": 0.5, "Female": 0.5}}
    breaches, page = check_dataset(
        stop_and_search, "2024-01", "d-secret", profile, HISTORY, lake, history_mix=history_mix
    )
    assert [b.rule for b in breaches] == ["dataset.mix.gender"]
    detail = breaches[0].detail
    assert "Gender" in detail and "classified" in detail
    assert "30.0 points" in detail
    assert "Male" not in detail and "Female" not in detail
    site = tmp_path / "lake" / "docs"
    pages = list(site.rglob("*.html"))
    assert _file(page) in pages
    for docs_page in pages:
        text = docs_page.read_text(encoding="utf-8")
        assert "Male" not in text and "Female" not in text


def test_data_docs_page_mentions_the_expectations(stop_and_search, tmp_path: Path):
    lake = FolderLake(tmp_path / "lake")
    breaches, page = check_dataset(
        stop_and_search,
        "2024-01",
        "d-docs",
        _profile(stop_and_search, 500),
        HISTORY,
        lake,
        history_mix={"type": {"Person search": 1.0}},
    )
    site = tmp_path / "lake" / "docs" / "contract=stop_and_search" / "period=2024-01" / "d-docs"
    page = _file(page)
    assert page.exists() and site.resolve() in page.parents
    text = _visible_text(page)
    assert "Unsuccessful Expectations 1" in text
    assert "Rows delivered between 532 and 1,598" in text  # ExpectColumnValuesToBeBetween
    assert "median of the previous published deliveries (1,065 rows)" in text
    # Completeness is documented, though reported as a breach by the row pass, not here.
    assert "Percent of rows with no age_range: between 0 and 20" in text
    assert [b.rule for b in breaches] == ["dataset.volume"]


@pytest.mark.parametrize(
    "rows, history",
    [
        (0, []),
        (0, HISTORY),
        (10, HISTORY[:2]),  # too little history to judge volume
        (10, [{"period": "2023-01"}, {"rows_delivered": "x", "period": "2023-02"}, "odd"]),
    ],
)
def test_odd_input_never_raises(stop_and_search, tmp_path: Path, rows, history):
    lake = FolderLake(tmp_path / "lake")
    breaches, _ = check_dataset(
        stop_and_search,
        "2024-01",
        "d-odd",
        DeliveryProfile(rows),
        history,
        lake,
        history_mix={"gender": {}, "type": {"Person search": 1.0}},
    )
    expected = ["dataset.volume"] if rows == 0 and history else []
    assert [b.rule for b in breaches] == expected


# -- Data Docs read offline: every page links the lake's one shared static folder ------------

LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.I)
ROW_LINK = re.compile(r"'_table_row_link_path': '([^']*)'")  # where a click on a row goes


def _links(text: str) -> list[str]:
    """Every src/href of a page, and the index table's row links."""
    return LINK.findall(text) + ROW_LINK.findall(text)


def _relative(link: str) -> str | None:
    """The file a relative link names (None for a link within the page)."""
    path = unquote(urlparse(link).path)
    return path or None


def _docs_run(stop_and_search, lake, delivery_id: str):
    return check_dataset(
        stop_and_search,
        "2024-01",
        delivery_id,
        _profile(stop_and_search, 500),
        HISTORY,
        lake,
        history_mix={"type": {"Person search": 1.0}},
    )


def test_data_docs_work_offline_from_one_shared_static_folder(stop_and_search, tmp_path: Path):
    root = tmp_path / "lake"
    lake = FolderLake(root)
    shared = root / "docs" / "_static"
    used: dict[str, set[Path]] = {}
    for delivery_id in ("1a2b3c4d5e6f", "9f8e7d6c5b4a"):
        _, link = _docs_run(stop_and_search, lake, delivery_id)
        page = _file(link)
        site = root / lake.docs_dir("stop_and_search", "2024-01", delivery_id)
        index = site / "index.html"
        assert index.exists() and site.resolve() in page.parents
        # GX's 4 MB static folder is not copied into the site: its two pages are all there is.
        assert not (site / "static").exists()
        assert sorted(p.suffix for p in site.rglob("*") if p.is_file()) == [".html", ".html"]
        used[delivery_id] = set()
        for docs_page in (page, index):
            text = docs_page.read_text(encoding="utf-8")
            assert "http://" not in text and "https://" not in text, docs_page
            assert "Subscribe" not in text and "walkthrough" not in text
            for href in _links(text):
                target = _relative(href)
                if target is None:
                    continue
                found = (docs_page.parent / target).resolve()
                assert found.is_file(), f"{docs_page.name}: {href} is not in the lake"
                assert root.resolve() in found.parents
                if shared.resolve() in found.parents:
                    used[delivery_id].add(found)
        names = {p.name for p in used[delivery_id]}
        assert {"bootstrap.min.css", "jquery.min.js", "bootstrap.bundle.min.js"} <= names
        assert {"bootstrap-table.min.js", "fontawesome.min.css", "solid.min.css"} <= names
        # The data asset is the contract, the month and the delivery, not "None".
        text = _visible_text(page)
        assert f"Data asset: stop_and_search · 2024-01 · delivery {delivery_id[:8]}" in text
        assert "Data asset: None" not in text
        assert f"stop_and_search · 2024-01 · delivery {delivery_id[:8]}" in _visible_text(index)
    # Both sites link the same files in the one shared folder, which holds the fonts too.
    assert used["1a2b3c4d5e6f"] == used["9f8e7d6c5b4a"]
    assert [p.relative_to(root) for p in root.rglob("*static") if p.is_dir()] == [
        Path("docs/_static")
    ]
    assert (shared / "fontawesome-free-6.6.0" / "webfonts" / "fa-solid-900.woff2").is_file()
    assert (shared / "README.md").is_file()  # where each file comes from, and its licence


def test_the_shared_static_folder_is_written_once_and_again_for_a_new_version(
    stop_and_search, tmp_path: Path
):
    from pipelines.validation import docs_static as data_docs

    root = tmp_path / "lake"
    lake = FolderLake(root)
    _docs_run(stop_and_search, lake, "d-first")
    css = root / "docs" / "_static" / "data_docs.css"
    version = root / "docs" / "_static" / "VERSION"
    assert version.read_text() == data_docs.static_version()
    written = css.stat().st_ino
    # Another process (nothing remembered) finds this version there and leaves it.
    data_docs._published.discard(lake.url)
    _docs_run(stop_and_search, lake, "d-second")
    assert css.stat().st_ino == written
    # A lake holding another version gets this one, whole, and nothing of the old one.
    version.write_text("older")
    (root / "docs" / "_static" / "old.css").write_text("")
    data_docs._published.discard(lake.url)
    _docs_run(stop_and_search, lake, "d-third")
    assert version.read_text() == data_docs.static_version()
    assert not (root / "docs" / "_static" / "old.css").exists()
    assert css.is_file() and css.stat().st_ino != written


@pytest.mark.slow  # starts SeaweedFS, as the other S3 tests do
def test_data_docs_on_an_s3_lake_link_the_shared_static_objects(stop_and_search, s3):
    _, prefix = s3
    lake = open_lake(f"s3://{LAKE_BUCKET}/{prefix}")
    assert isinstance(lake, S3Lake)
    for delivery_id in ("1a2b3c4d5e6f", "9f8e7d6c5b4a"):
        _, link = _docs_run(stop_and_search, lake, delivery_id)
        folder = lake.docs_dir("stop_and_search", "2024-01", delivery_id)
        assert link == lake.uri(unquote(link.removeprefix(lake.uri(""))))
        keys = lake.glob_below(folder)
        assert not [k for k in keys if "/static/" in k]
        pages = [k for k in keys if k.endswith(".html")]
        assert len(pages) == len(keys) == 2 and f"{folder}/index.html" in pages
        for key in pages:
            text = lake.read_text(key)
            assert "http://" not in text and "https://" not in text
            for href in _links(text):
                target = _relative(href)
                if target is not None:
                    linked = posixpath.normpath(posixpath.join(posixpath.dirname(key), target))
                    assert lake.exists(linked), f"{key}: {href}"
    static = lake.glob_below("docs/_static")
    assert "docs/_static/bootstrap-4.6.2/bootstrap.min.css" in static
    assert "docs/_static/VERSION" in static


def test_deliveries_checked_in_one_process_each_get_their_own_pages(
    stop_and_search, tmp_path: Path
):
    import pipelines.validation.dataset_expectations as dataset_expectations

    contracts = load_contracts()
    lake = FolderLake(tmp_path / "lake")
    runs = [
        (stop_and_search, "2024-01", "aaaa1111"),
        (contracts["use_of_force"], "2024-01", "bbbb2222"),
        (stop_and_search, "2024-02", "cccc3333"),
    ]
    for contract, period, delivery_id in runs:
        profile = profile_from_counts(contract, 800)
        _, link = check_dataset(contract, period, delivery_id, profile, HISTORY, lake)
        index = _visible_text(_file(link).parents[4] / "index.html")
        # Each site's index lists its own delivery only, under its own name.
        assert f"{contract.name} · {period} · delivery {delivery_id}" in index
        others = [d for _, _, d in runs if d != delivery_id]
        assert not any(other in index for other in others)
    # The process's one GE context keeps nothing of the deliveries it checked.
    context = dataset_expectations._SESSION.context
    assert context.suites.all() == []
    assert list(context.validation_definitions.all()) == []
    assert context.validation_results_store.list_keys() == []
    # Nor a docs site: each delivery's is built from its own config, not saved in the
    # context's (which re-saved the project config for every delivery).
    assert not context.variables.data_docs_sites


def _same_page(text: str) -> str:
    """A Data Docs page without what differs between two builds of the same validation
    (run times, and the ids GX makes for collapsible blocks)."""
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", text)
    text = re.sub(r"\d{8}T\d{6}\.\d{6}Z", "RUN", text)
    text = re.sub(r"'_run_time_sort': [0-9.]+", "SORT", text)
    return re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?", "TIME", text)


def test_lighter_gx_bookkeeping_gives_gx_own_verdicts_and_pages(stop_and_search, tmp_path: Path):
    """GX's per-expectation kwargs and row filters are replaced by cheaper equivalents
    (`_lighten_gx`): the same delivery checked with GX's own methods and with them gives
    the same breaches and the same page, failed and passed expectations alike."""
    import pipelines.validation.dataset_expectations as dataset_expectations

    dataset_expectations.warm_session()
    assert dataset_expectations._GX_OWN, "the lighter methods are not in use"
    profile = _profile(stop_and_search, 500, type_counts={"Person search": 200, "Vehicle": 300})
    mix = {"type": {"Person search": 1.0}, "gender": {"Male": 0.5, "Female": 0.5}}

    def checked(name: str) -> tuple[list[str], str, str]:
        lake = FolderLake(tmp_path / name)
        breaches, link = check_dataset(
            stop_and_search, "2024-01", "d-same", profile, HISTORY, lake, history_mix=mix
        )
        page = _file(link)
        index = page.parents[4] / "index.html"
        return [b.detail for b in breaches], page.read_text(), index.read_text()

    lighter = checked("lighter")
    swapped = {key: getattr(key[0], key[1]) for key in dataset_expectations._GX_OWN}
    try:
        for (cls, name), own in dataset_expectations._GX_OWN.items():
            setattr(cls, name, own)
        own = checked("own")
    finally:
        for (cls, name), method in swapped.items():
            setattr(cls, name, method)
    assert len(lighter[0]) == 2  # volume and type mix failed; gender's mix passed
    assert lighter[0] == own[0]
    assert _same_page(lighter[1]) == _same_page(own[1])
    assert _same_page(lighter[2]) == _same_page(own[2])  # the site's index
