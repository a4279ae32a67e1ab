"""How a delivery's Data Docs are built and served: great-expectations' pages, readable offline.

Each delivery's dataset checks (`dataset_expectations`) leave a small great-expectations site
in the lake under `docs/contract=<c>/period=<p>/<delivery_id>/`: `index.html` and one
validation page. GX's own pages load Bootstrap, jQuery, FontAwesome and its logo from the
internet and copy 4 MB of static files into every site. Here, through GX's own config hooks
(the site builder's `class_name`/`module_name`, and the `renderer` and `view` of the
`validations` section and of the site index):

- pages render with our template overrides (`data_docs_templates/`) in front of GX's own;
- they link CSS, JS and fonts from ONE shared folder in the lake, `docs/_static/` (copied
  from `data_docs_static/`, written once per lake and again only when its content changes:
  `docs_static`, which imports no great-expectations), and no site gets a copy of GX's
  static folder;
- no page has an external URL (no remote script, stylesheet, font or logo, no newsletter
  footer, no walkthrough modal);
- the data asset is named as the contract and delivery ("stop_and_search · 2025-10 ·
  delivery 1a2b3c4d"), not "None", and no page links a suite page that is not built.

Jinja compiles GX's ~30 templates once per process: every view shares one `Environment`
(GX makes a new one per view, and so compiled them again for each delivery).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from great_expectations.render.renderer.page_renderer import (  # noqa: E402
    ValidationResultsPageRenderer,
)
from great_expectations.render.renderer.site_builder import SiteBuilder  # noqa: E402
from great_expectations.render.renderer.site_index_page_renderer import (  # noqa: E402
    SiteIndexPageRenderer,
)
from great_expectations.render.view import DefaultJinjaPageView  # noqa: E402
from jinja2 import ChoiceLoader, Environment, FileSystemLoader  # noqa: E402

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().with_name("data_docs_templates")

# -- the site GX builds for one delivery ----------------------------------------------------


def site_config(site: Path, static: str, data_asset: str) -> dict[str, Any]:
    """GX's config of the Data Docs site of one delivery, written into the folder `site`.

    `static`: the shared static folder relative to the site root (`static_path`).
    `data_asset`: what the pages call the data (`data_asset_label`).
    """
    view = {"module_name": __name__, "static_path": static}
    return {
        "class_name": "DeliverySiteBuilder",
        "module_name": __name__,
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(site),
        },
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "renderer": {
                "module_name": __name__,
                "class_name": "DeliveryIndexPageRenderer",
                "data_asset": data_asset,
            },
            "view": {**view, "class_name": "DeliveryIndexPageView"},
        },
        "site_section_builders": {
            # The suite page would say the same expectations again, and costs a third of
            # the build; there is no profiling.
            "expectations": "0",
            "profiling": "0",
            "validations": {
                "renderer": {
                    "module_name": __name__,
                    "class_name": "DeliveryValidationPageRenderer",
                    "data_asset": data_asset,
                },
                "view": {**view, "class_name": "DeliveryPageView"},
            },
        },
    }


class DeliverySiteBuilder(SiteBuilder):
    """GX's site builder, without copying GX's static folder into the site: the pages link
    the lake's shared one (`publish_static`)."""

    def build(self, resource_identifiers=None, build_index: bool = True):
        for section_builder in self.site_section_builders.values():
            section_builder.build(resource_identifiers=resource_identifiers)
        _, index_links = self.site_index_builder.build(build_index=build_index)
        return self.get_resource_url(only_if_exists=False), index_links


class DeliveryValidationPageRenderer(ValidationResultsPageRenderer):
    """The validation page, naming the delivery as its data asset; the suite is named but
    not linked (its page is not built)."""

    def __init__(
        self,
        data_asset: str = "",
        column_section_renderer=None,
        run_info_at_end: bool = False,
        data_context=None,
    ) -> None:
        super().__init__(column_section_renderer, run_info_at_end, data_context)
        self.data_asset = data_asset

    def _render_validation_header(self, validation_results):
        header = super()._render_validation_header(validation_results)
        template = header.subheader.string_template
        template["params"]["data_asset_name"] = self.data_asset
        template["styling"]["params"].pop("expectation_suite_name", None)
        return header

    def _determine_page_title(self, run_name, run_time, data_asset_name, expectation_suite_name):
        return f"Dataset checks / {self.data_asset}"


class DeliveryIndexPageRenderer(SiteIndexPageRenderer):
    """The site index, naming the delivery; no link to a suite page, no date picker (its
    script is not shipped: the run time is filtered as text)."""

    def __init__(self, data_asset: str = "") -> None:
        super().__init__()
        self.data_asset = data_asset

    def render(self, index_links_dict):
        if self.data_asset:
            index_links_dict["site_name"] = self.data_asset
            for link in index_links_dict.get("validations_links", []):
                link["asset_name"] = self.data_asset
        return super().render(index_links_dict)

    @classmethod
    def _generate_validation_results_link_table(cls, index_links_dict):
        table = super()._generate_validation_results_link_table(index_links_dict)
        for column in table.table_columns:
            if column.get("filterControl") == "datepicker":
                column["filterControl"] = "input"
                column.pop("filterDatepickerOptions", None)
                column.pop("filterCustomSearch", None)
        return table

    @classmethod
    def _render_expectation_suite_cell(cls, expectation_suite_name, expectation_suite_path):
        cell = super()._render_expectation_suite_cell(expectation_suite_name, None)
        cell.string_template.pop("tag", None)
        cell.string_template["styling"].pop("attributes", None)
        return cell


@functools.cache
def _environment(styles: str | None, views: str | None) -> Environment:
    """One jinja Environment per process (per custom folders, which GX's ephemeral context
    has none of): GX binds its filters to a view, but they keep no state of the view's, so
    the views of every later build can share the templates compiled for the first."""
    env = DefaultJinjaPageView(styles, views).env
    env.loader = ChoiceLoader([FileSystemLoader(TEMPLATES), env.loader])
    env.auto_reload = False  # package files: no stat of each template on each render
    return env


def _depth(document: Any) -> int:
    """How many folders below the site root GX writes this page."""
    renderer = getattr(document, "renderer_type", None) or ""
    suite = getattr(document, "expectation_suite_name", None) or ""
    parts = len(suite.split("."))
    if "ValidationResults" in renderer or "ProfilingResults" in renderer:
        return parts + 3  # validations/<suite...>/<run name>/<run time>/<batch>.html
    if "ExpectationSuite" in renderer:
        return parts  # expectations/<suite...>.html
    return 0  # index.html


class DeliveryPageView(DefaultJinjaPageView):
    """GX's page view with our templates first and the static files linked from the lake's
    shared folder (`static_path`, relative to the site root)."""

    def __init__(
        self,
        custom_styles_directory: str | None = None,
        custom_views_directory: str | None = None,
        static_path: str = "_static",
    ) -> None:
        # Not GX's __init__: it would make (and later compile) a new Environment.
        self.custom_styles_directory = custom_styles_directory
        self.custom_views_directory = custom_views_directory
        self.static_path = static_path.rstrip("/")
        self.env = _environment(custom_styles_directory, custom_views_directory)

    def render(self, document, template=None, **kwargs):
        up = "../" * _depth(document)
        return super().render(
            document, template, static=f"{up}{self.static_path}/", home=up, **kwargs
        )


class DeliveryIndexPageView(DeliveryPageView):
    """The site index, in the same frame."""

    _template = "index_page.j2"
