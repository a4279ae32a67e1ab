"""Our own rules on a contract's agreement terms (data_contracts/README.md): the sharing
agreement, special-category and pseudonymised fields, owners on both sides, the delivery
schedule, publishing terms and the file format. `contract_lint` adds the table's."""

import codecs
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.contract_terms import (
    AGREEMENT_KEYS,
    AGREEMENT_LIST_KEYS,
    AGREEMENT_TEXT_KEYS,
    ARTICLE_6,
    ARTICLE_9,
    FILE_FORMAT_KEYS,
    FILES_PER_PERIOD,
    NOTICE_RESPONSE_KEY,
    OPTIONAL_CUSTOM,
    OWNER_KEYS,
    OWNER_ROLES,
    PERIODS,
    PERSONAL_CLASSES,
    SCHEDULE_KEYS,
    SEMVER,
    SNAKE_CASE,
    STATUSES,
    TOP_CUSTOM,
    YEAR_MONTH,
    Finding,
    PathParts,
    did_you_mean,
    iso_duration_parts,
    quoted,
    render_path,
)
from schemas.odcs_schema import ODCS_API_VERSION

# --- our own rules ------------------------------------------------------------------------


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def custom_entries(block: Any) -> list[tuple[int, str, Any]]:
    entries = []
    raw = block.get("customProperties") if isinstance(block, dict) else None
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(item, dict) and isinstance(item.get("property"), str):
            entries.append((i, item["property"], item.get("value")))
    return entries


def layout_of(table: dict[str, Any]) -> dict[str, Any]:
    for _, key, value in custom_entries(table):
        if key == "layout" and isinstance(value, dict):
            return value
    return {}


class AgreementChecker:
    """Collects findings for one contract document: the agreement's terms (the table's
    checks are `contract_lint`'s, built on this)."""

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
                    f"unknown field{did_you_mean(str(key), known)}; expected: {', '.join(known)}",
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
        if blank(name) or not isinstance(name, str):
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
                    ("id",), f"must be {expected} (from the name), not {quoted(doc.get('id'))}"
                )
        version = doc.get("version")
        if not isinstance(version, str) or not SEMVER.match(version):
            self.error(
                ("version",),
                f"must be a semantic version such as 1.0.0, not {quoted(version)}",
            )
        if doc.get("status") not in STATUSES:
            self.error(
                ("status",),
                f"{quoted(doc.get('status'))} is not a status we use; "
                f"one of: {', '.join(STATUSES)}",
            )
        description = doc.get("description")
        description = description if isinstance(description, dict) else {}
        for key in ("purpose", "usage", "limitations"):
            if blank(description.get(key)):
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
        if blank(team.get("name")):
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
        for i, prop, value in custom_entries(self.doc):
            if prop in found:
                self.error(
                    ("customProperties", i, "property"),
                    f"{prop} appears twice; only the last one would count",
                )
            elif prop not in TOP_CUSTOM + OPTIONAL_CUSTOM:
                known = TOP_CUSTOM + OPTIONAL_CUSTOM
                self.error(
                    ("customProperties", i, "property"),
                    f"unknown custom property {prop!r}{did_you_mean(prop, known)}; "
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
            if blank(value) or not isinstance(value, str):
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
                        f"{did_you_mean(column, self.columns)}; use curated column names",
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
            if blank(owners.get(side)):
                self.error((*parts, side), f"the {side} owner is missing or empty")
        team = self.doc.get("team")
        members = team.get("members") if isinstance(team, dict) else None
        if not isinstance(members, list):
            return
        for side in OWNER_KEYS:
            owner = owners.get(side)
            if blank(owner):
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
                            f"but classified {quoted(prop.get('classification'))}; classify it "
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
                    f"logicalType must be string, not {quoted(prop.get('logicalType'))}",
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
                f"{quoted(period)} is not a delivery period; one of: {', '.join(PERIODS)}"
                f"{did_you_mean(str(period), PERIODS)}",
            )
        first = schedule.get("firstPeriod")
        if not isinstance(first, str) or not YEAR_MONTH.match(first):
            self.error(
                (*base, "firstPeriod"),
                f"must be a month as text YYYY-MM (quote it), not {quoted(first)}",
            )
        due = schedule.get("dueDayOfFollowingMonth")
        if not is_int(due) or not 1 <= due <= 28:
            self.error(
                (*base, "dueDayOfFollowingMonth"),
                f"must be a day from 1 to 28 (every month has it), not {quoted(due)}",
            )
        late = schedule.get("lateAfterDays")
        if not is_int(late) or late < 0:
            self.error(
                (*base, "lateAfterDays"),
                f"must be a whole number of days >= 0, not {quoted(late)}",
            )
        files = schedule.get("filesPerPeriod", "one")
        if files not in FILES_PER_PERIOD:
            self.error(
                (*base, "filesPerPeriod"),
                f"must be one (a second file replaces the first, with a breach) or parts "
                f"(every file of the period is part of its delivery), not {quoted(files)}",
            )

    def publishing_terms(self, custom: dict[str, Any]) -> None:
        """minPublishableShare (a share from 0 to 1) and mixMinimumValues (a count >= 1)."""
        share = custom.get("minPublishableShare")
        if share is not None and (
            isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1
        ):
            self.error(
                self._custom_path("minPublishableShare"),
                f"must be a share of the rows from 0 to 1 (0.5 is half), not {quoted(share)}",
            )
        least = custom.get("mixMinimumValues")
        if least is not None and (not is_int(least) or least < 1):
            self.error(
                self._custom_path("mixMinimumValues"),
                f"must be a whole number of values >= 1, not {quoted(least)}",
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
                (*base, "type"), f"the pipeline reads csv only, not {quoted(fmt.get('type'))}"
            )
        delimiter = fmt.get("delimiter")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            self.error((*base, "delimiter"), f"must be one character, not {quoted(delimiter)}")
        if fmt.get("header") is not True:
            self.error((*base, "header"), "must be true: columns are matched by their header")
        encoding = fmt.get("encoding")
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            self.error((*base, "encoding"), f"{quoted(encoding)} is not a known text encoding")
        limit = fmt.get("maxDecompressedBytes")
        if limit is not None and (not is_int(limit) or limit <= 0):
            self.error(
                (*base, "maxDecompressedBytes"),
                f"must be a whole number of bytes > 0, not {quoted(limit)}",
            )
        ratio = fmt.get("maxCompressionRatio")
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 1
        ):
            self.error(
                (*base, "maxCompressionRatio"), f"must be a number >= 1, not {quoted(ratio)}"
            )
