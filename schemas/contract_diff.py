"""What changed between two versions of a contract, and whether the version bump covers it.

Each change gets a verdict:

- breaking: a delivery that met the old contract may fail the new one, or the curated table
  changes shape (column removed or renamed, type changed, value removed, range narrowed,
  column made required, unique key added, rule tightened). Needs a MAJOR version bump.
- governance: what is shared, why, with whom or for how long changes (new personal or
  special-category field, classification lowered, field no longer pseudonymised, retention,
  purpose, lawful basis, parties). Needs a variation of the data-sharing agreement, and at
  least a MINOR bump.
- additive: something is added or loosened (new optional column, value added, range widened).
  Needs at least a MINOR bump.
- editorial: wording only (descriptions, examples). Needs at least a PATCH bump.

The view is the agreement's: anything that can make a conforming delivery non-conforming is
breaking, as is anything that changes the curated table under its readers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from schemas.contract_terms import iso_duration_parts, rule_kind

Verdict = Literal["breaking", "governance", "additive", "editorial"]
Bump = Literal["major", "minor", "patch", "none"]

VERDICTS: tuple[Verdict, ...] = ("breaking", "governance", "additive", "editorial")
NEEDED_BUMP: dict[Verdict, Bump] = {
    "breaking": "major",
    "governance": "minor",
    "additive": "minor",
    "editorial": "patch",
}
BUMP_RANK: dict[str, int] = {"none": 0, "patch": 1, "minor": 2, "major": 3}
CLASS_RANK = {"public": 0, "internal": 1, "restricted": 2, "personal": 3, "special-category": 4}
PERSONAL_CLASSES = ("personal", "special-category")
SEVERITY_RANK = {"minor": 0, "major": 1, "critical": 2}
ON_FAILURE_RANK = {"keep": 0, "quarantine": 1}
SEMVER_CORE = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
DESCRIPTIVE = ("description", "businessName", "examples", "tags", "authoritativeDefinitions")
AGREEMENT_LABELS = {
    "reference": "agreement reference",
    "purpose": "purpose of the sharing",
    "lawfulBasis": "lawful basis",
    "retentionClause": "retention clause",
    "noticeResponseDays": "days the provider has to acknowledge a notice of breach",
}
VARIATION = "needs a variation of the data-sharing agreement"


@dataclass(frozen=True)
class Change:
    """One difference between the two versions, with its verdict."""

    verdict: Verdict
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class DiffReport:
    """All changes between two versions of one contract, and the version bump check."""

    name: str
    old_version: str
    new_version: str
    agreement_reference: str = ""
    changes: list[Change] = field(default_factory=list)

    @property
    def required_bump(self) -> Bump:
        """The smallest bump that covers every change."""
        needed = [NEEDED_BUMP[c.verdict] for c in self.changes]
        return max(needed, key=BUMP_RANK.__getitem__, default="none")

    @property
    def actual_bump(self) -> str:
        """`major`, `minor`, `patch`, `none`, `downgrade`, or `invalid` (not semantic)."""
        old, new = _semver(self.old_version), _semver(self.new_version)
        if old is None or new is None:
            return "invalid"
        if new < old:
            return "downgrade"
        if new[0] > old[0]:
            return "major"
        if new[1] > old[1]:
            return "minor"
        if new[2] > old[2]:
            return "patch"
        return "none"

    @property
    def ok(self) -> bool:
        """True when the new version is bumped enough for the changes."""
        actual = self.actual_bump
        if actual in ("invalid", "downgrade"):
            return False
        return BUMP_RANK[actual] >= BUMP_RANK[self.required_bump]

    def of(self, verdict: Verdict) -> list[Change]:
        """The changes with one verdict, in the order they were found."""
        return [c for c in self.changes if c.verdict == verdict]

    def text(self) -> str:
        """The report for people: agreement variations first, then by verdict, then the bump."""
        lines = [f"Contract {self.name}: {self.old_version} -> {self.new_version}"]
        if not self.changes:
            lines.append("No changes.")
        governance = self.of("governance")
        if governance:
            reference = f" ({self.agreement_reference})" if self.agreement_reference else ""
            lines += [
                "",
                f"NEEDS A VARIATION OF THE DATA-SHARING AGREEMENT{reference}:",
                "  These change what is shared, why, with whom or for how long: agree a "
                "variation with the other party before this version is used.",
            ]
            lines += [f"  - {c}" for c in governance]
        headings: dict[Verdict, str] = {
            "breaking": "Breaking changes (need a MAJOR version bump):",
            "additive": "Additive changes (need at least a MINOR version bump):",
            "editorial": "Editorial changes (need at least a PATCH version bump):",
        }
        for verdict, heading in headings.items():
            found = self.of(verdict)
            if found:
                lines += ["", heading] + [f"  - {c}" for c in found]
        lines += ["", self.verdict_line()]
        return "\n".join(lines)

    def verdict_line(self) -> str:
        """One line: is the version bump enough?"""
        actual, needed = self.actual_bump, self.required_bump
        bump = f"{self.old_version} -> {self.new_version}"
        if actual == "invalid":
            return f"FAIL: {bump}: both versions must be semantic (MAJOR.MINOR.PATCH)."
        if actual == "downgrade":
            return f"FAIL: {bump} goes backwards."
        if not self.ok:
            return (
                f"FAIL: {bump} is {_a(actual)} bump, but these changes need {_a(needed)} "
                f"bump (at least {_next_version(self.old_version, needed)})."
            )
        if needed == "none":
            return f"OK: no changes; {bump} is {_a(actual)} bump."
        return f"OK: {bump} is {_a(actual)} bump; these changes need {_a(needed)} bump."


def _a(bump: str) -> str:
    return "no version" if bump == "none" else f"a {bump}"


def _semver(version: str) -> tuple[int, int, int] | None:
    match = SEMVER_CORE.match(str(version))
    if not match:
        return None
    major, minor, patch = (int(x) for x in match.groups())
    return major, minor, patch


def _next_version(version: str, bump: str) -> str:
    core = _semver(version) or (0, 0, 0)
    if bump == "major":
        return f"{core[0] + 1}.0.0"
    if bump == "minor":
        return f"{core[0]}.{core[1] + 1}.0"
    return f"{core[0]}.{core[1]}.{core[2] + 1}"


def _norm(text: Any) -> str:
    """Text with whitespace folded, so YAML re-wrapping is not a change."""
    return " ".join(str(text).split()) if text is not None else ""


def _custom(block: Any) -> dict[str, Any]:
    raw = block.get("customProperties") if isinstance(block, dict) else None
    return {
        p["property"]: p.get("value")
        for p in (raw if isinstance(raw, list) else [])
        if isinstance(p, dict) and "property" in p
    }


def _table(doc: dict[str, Any]) -> dict[str, Any]:
    schema = doc.get("schema")
    if isinstance(schema, list) and schema and isinstance(schema[0], dict):
        return schema[0]
    return {}


def _columns(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    props = _table(doc).get("properties")
    return {
        p["name"]: p
        for p in (props if isinstance(props, list) else [])
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    }


def _options(prop: dict[str, Any]) -> dict[str, Any]:
    options = prop.get("logicalTypeOptions")
    return options if isinstance(options, dict) else {}


def _quote(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) for v in values)


class _Differ:
    def __init__(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.old, self.new = old, new
        self.changes: list[Change] = []
        self.old_agreement = _custom(old).get("sharingAgreement") or {}
        self.new_agreement = _custom(new).get("sharingAgreement") or {}

    def add(self, verdict: Verdict, where: str, message: str) -> None:
        self.changes.append(Change(verdict, where, message))

    def run(self) -> list[Change]:
        self.identity()
        self.description()
        self.agreement()
        self.schedule_and_format()
        self.table()
        self.columns()
        return self.changes

    # contract-level ------------------------------------------------------------------------

    def identity(self) -> None:
        for key in ("name", "id"):
            if self.old.get(key) != self.new.get(key):
                self.add(
                    "breaking",
                    key,
                    f"changed from {self.old.get(key)!r} to {self.new.get(key)!r}: "
                    "this is a different contract",
                )
        if self.old.get("tenant") != self.new.get("tenant"):
            self.add(
                "governance",
                "tenant",
                f"the organisation the data is for changed from {self.old.get('tenant')!r} "
                f"to {self.new.get('tenant')!r}",
            )
        for key in ("status", "apiVersion", "domain", "dataProduct", "tags"):
            if self.old.get(key) != self.new.get(key):
                self.add(
                    "editorial", key, f"changed from {self.old.get(key)!r} to {self.new.get(key)!r}"
                )
        if self.old.get("team") != self.new.get("team"):
            self.add("editorial", "team", "team or contacts changed")

    def description(self) -> None:
        old = self.old.get("description") if isinstance(self.old.get("description"), dict) else {}
        new = self.new.get("description") if isinstance(self.new.get("description"), dict) else {}
        for key in sorted(set(old) | set(new)):
            if _norm(old.get(key)) == _norm(new.get(key)):
                continue
            if key in ("purpose", "usage"):
                self.add(
                    "governance", f"description.{key}", f"the stated {key} changed: {VARIATION}"
                )
            else:
                self.add("editorial", f"description.{key}", "wording changed")

    def agreement(self) -> None:
        old, new = self.old_agreement, self.new_agreement
        if not isinstance(old, dict) or not isinstance(new, dict):
            if old != new:
                self.add("governance", "sharingAgreement", "the agreement terms changed")
            return
        where = "sharingAgreement"
        for key, label in AGREEMENT_LABELS.items():
            if _norm(old.get(key)) != _norm(new.get(key)):
                self.add("governance", f"{where}.{key}", f"the {label} changed")
        self.retention(old.get("retention"), new.get("retention"))
        old_owners = old.get("owners") if isinstance(old.get("owners"), dict) else {}
        new_owners = new.get("owners") if isinstance(new.get("owners"), dict) else {}
        for side in sorted(set(old_owners) | set(new_owners)):
            if _norm(old_owners.get(side)) != _norm(new_owners.get(side)):
                self.add(
                    "governance",
                    f"{where}.owners.{side}",
                    f"new {side}: {old_owners.get(side)!r} -> {new_owners.get(side)!r}",
                )
        known = {*AGREEMENT_LABELS, "retention", "owners", *self._lists()}
        for key in sorted((set(old) | set(new)) - known):
            if old.get(key) != new.get(key):
                self.add("governance", f"{where}.{key}", "agreement term changed")

    @staticmethod
    def _lists() -> tuple[str, ...]:
        return ("specialCategoryFields", "pseudonymisedFields")

    def retention(self, old: Any, new: Any) -> None:
        if _norm(old) == _norm(new):
            return
        old_days, new_days = _duration_days(old), _duration_days(new)
        if old_days is not None and new_days is not None:
            how = "extended" if new_days > old_days else "shortened"
            message = f"retention {how} from {old} to {new}"
        else:
            message = f"retention changed from {old!r} to {new!r}"
        self.add("governance", "sharingAgreement.retention", message)

    def schedule_and_format(self) -> None:
        old_s = _custom(self.old).get("deliverySchedule") or {}
        new_s = _custom(self.new).get("deliverySchedule") or {}
        where = "deliverySchedule"
        if isinstance(old_s, dict) and isinstance(new_s, dict):
            for key in ("period", "firstPeriod"):
                if old_s.get(key) != new_s.get(key):
                    self.add(
                        "breaking",
                        f"{where}.{key}",
                        f"changed from {old_s.get(key)!r} to {new_s.get(key)!r}",
                    )
            for key, later in (("dueDayOfFollowingMonth", "later"), ("lateAfterDays", "longer")):
                a, b = old_s.get(key), new_s.get(key)
                if a == b:
                    continue
                if isinstance(a, int) and isinstance(b, int) and b > a:
                    self.add("additive", f"{where}.{key}", f"{later}: {a} -> {b}")
                else:
                    self.add("breaking", f"{where}.{key}", f"tightened: {a!r} -> {b!r}")
        old_f = _custom(self.old).get("fileFormat") or {}
        new_f = _custom(self.new).get("fileFormat") or {}
        if isinstance(old_f, dict) and isinstance(new_f, dict):
            for key in sorted(set(old_f) | set(new_f)):
                if old_f.get(key) != new_f.get(key):
                    self.add(
                        "breaking",
                        f"fileFormat.{key}",
                        f"changed from {old_f.get(key)!r} to {new_f.get(key)!r}",
                    )

    # the table -----------------------------------------------------------------------------

    def table(self) -> None:
        old, new = _table(self.old), _table(self.new)
        if old.get("name") != new.get("name"):
            self.add(
                "breaking",
                "table",
                f"curated table renamed from {old.get('name')!r} to {new.get('name')!r}",
            )
        if old.get("physicalName") != new.get("physicalName"):
            self.add(
                "breaking",
                "table",
                f"delivered file name changed from {old.get('physicalName')!r} "
                f"to {new.get('physicalName')!r}",
            )
        if _custom(old).get("layout") != _custom(new).get("layout"):
            self.add("breaking", "table", "layout changed (how the delivered columns are read)")
        for key in DESCRIPTIVE:
            if _norm(old.get(key)) != _norm(new.get(key)):
                self.add("editorial", "table", f"{key} changed")
        self.rules("table", _rules(old), _rules(new))

    def columns(self) -> None:
        old_cols, new_cols = _columns(self.old), _columns(self.new)
        old_only = [n for n in old_cols if n not in new_cols]
        new_only = [n for n in new_cols if n not in old_cols]
        renamed: dict[str, str] = {}
        for old_name in old_only:
            header = old_cols[old_name].get("physicalName")
            for new_name in new_only:
                new = new_cols[new_name]
                if new_name not in renamed.values() and (
                    new.get("physicalName") == header or header in _previous_names(new)
                ):
                    renamed[old_name] = new_name
                    break
        for old_name in old_only:
            if old_name in renamed:
                new_name = renamed[old_name]
                self.add(
                    "breaking",
                    f"column {old_name}",
                    f"curated column renamed to {new_name!r}: queries on the curated table break",
                )
                self.column(old_name, old_cols[old_name], new_cols[new_name], new_name)
            else:
                self.add(
                    "breaking",
                    f"column {old_name}",
                    f"removed (header {old_cols[old_name].get('physicalName')!r})",
                )
        for new_name in new_only:
            if new_name in renamed.values():
                continue
            self.new_column(new_name, new_cols[new_name])
        for name in old_cols:
            if name in new_cols:
                self.column(name, old_cols[name], new_cols[name], name)
        if [n for n in old_cols if n in new_cols] != [n for n in new_cols if n in old_cols]:
            self.add("editorial", "table", "columns reordered (deliveries are read by header)")

    def new_column(self, name: str, prop: dict[str, Any]) -> None:
        where = f"column {name}"
        header = prop.get("physicalName")
        if prop.get("required"):
            self.add("breaking", where, f"new required column (header {header!r})")
        else:
            self.add("additive", where, f"new optional column (header {header!r})")
        classification = prop.get("classification")
        special = name in (self.new_agreement.get("specialCategoryFields") or [])
        if special or classification == "special-category":
            self.add("governance", where, f"new special-category field: {VARIATION}")
        elif classification == "personal" or name in self._pseudonymised(self.new_agreement):
            self.add("governance", where, f"new personal-data field: {VARIATION}")

    @staticmethod
    def _pseudonymised(agreement: Any) -> list[str]:
        value = agreement.get("pseudonymisedFields") if isinstance(agreement, dict) else None
        return value if isinstance(value, list) else []

    @staticmethod
    def _special(agreement: Any) -> list[str]:
        value = agreement.get("specialCategoryFields") if isinstance(agreement, dict) else None
        return value if isinstance(value, list) else []

    def column(self, old_name: str, old: dict[str, Any], new: dict[str, Any], name: str) -> None:
        where = f"column {name}"
        self.header(where, old, new)
        if old.get("logicalType") != new.get("logicalType"):
            self.add(
                "breaking",
                where,
                f"type changed from {old.get('logicalType')} to {new.get('logicalType')}",
            )
        self.required_and_keys(where, old, new)
        self.options(where, _options(old), _options(new))
        self.classification(where, old_name, name, old, new)
        for key in DESCRIPTIVE:
            if _norm(old.get(key)) != _norm(new.get(key)):
                self.add("editorial", where, f"{key} changed")
        handled = {
            "name", "physicalName", "logicalType", "logicalTypeOptions", "required", "unique",
            "primaryKey", "primaryKeyPosition", "classification", "quality", "customProperties",
            *DESCRIPTIVE,
        }  # fmt: skip
        for key in sorted((set(old) | set(new)) - handled):
            if old.get(key) != new.get(key):
                self.add("additive", where, f"{key} changed (not classified automatically: review)")
        self.allowed_values(where, old, new)
        self.rules(where, _rules(old), _rules(new))

    def header(self, where: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_header, new_header = old.get("physicalName"), new.get("physicalName")
        previous_old, previous_new = _previous_names(old), _previous_names(new)
        if old_header != new_header:
            if old_header in previous_new:
                self.add(
                    "additive",
                    where,
                    f"header renamed from {old_header!r} to {new_header!r}; the old header is "
                    "still accepted (previousNames)",
                )
            else:
                self.add(
                    "breaking",
                    where,
                    f"header renamed from {old_header!r} to {new_header!r} without listing "
                    f"{old_header!r} in previousNames: deliveries with the old header fail",
                )
        dropped = [h for h in previous_old if h not in previous_new and h != new_header]
        if dropped:
            self.add("breaking", where, f"previous headers no longer accepted: {_quote(dropped)}")
        added = [h for h in previous_new if h not in previous_old and h != old_header]
        if added:
            self.add("additive", where, f"previous headers now accepted: {_quote(added)}")

    def required_and_keys(self, where: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        if bool(old.get("required")) != bool(new.get("required")):
            if new.get("required"):
                self.add("breaking", where, "made required: a blank cell now breaks the rule")
            else:
                self.add("additive", where, "no longer required")
        for key, label in (("unique", "unique"), ("primaryKey", "part of the primary key")):
            if bool(old.get(key)) != bool(new.get(key)):
                if new.get(key):
                    self.add("breaking", where, f"now {label}: a new unique key")
                else:
                    self.add("additive", where, f"no longer {label}")
        if (
            old.get("primaryKey")
            and new.get("primaryKey")
            and old.get("primaryKeyPosition") != new.get("primaryKeyPosition")
        ):
            self.add("breaking", where, "primary key position changed")

    def options(self, where: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key in ("format", "defaultTimezone", "timezone"):
            if old.get(key) != new.get(key):
                self.add(
                    "breaking", where, f"{key} changed from {old.get(key)!r} to {new.get(key)!r}"
                )
        for key, narrower in (("minimum", lambda a, b: b > a), ("maximum", lambda a, b: b < a)):
            a, b = old.get(key), new.get(key)
            if a == b:
                continue
            if b is None:
                self.add("additive", where, f"{key} {a} removed (range widened)")
            elif a is None:
                self.add("breaking", where, f"{key} {b} added (range narrowed)")
            elif narrower(a, b):
                self.add("breaking", where, f"range narrowed: {key} {a} -> {b}")
            else:
                self.add("additive", where, f"range widened: {key} {a} -> {b}")
        if old.get("pattern") != new.get("pattern"):
            if new.get("pattern") is None:
                self.add("additive", where, "pattern removed")
            else:
                self.add(
                    "breaking",
                    where,
                    f"pattern {'added' if old.get('pattern') is None else 'changed'}: "
                    f"{new.get('pattern')!r}",
                )
        handled = {"format", "defaultTimezone", "timezone", "minimum", "maximum", "pattern"}
        for key in sorted((set(old) | set(new)) - handled):
            if old.get(key) != new.get(key):
                self.add(
                    "breaking", where, f"{key} changed from {old.get(key)!r} to {new.get(key)!r}"
                )

    def classification(
        self, where: str, old_name: str, name: str, old: dict[str, Any], new: dict[str, Any]
    ) -> None:
        a, b = old.get("classification"), new.get("classification")
        if a != b:
            rank_a, rank_b = CLASS_RANK.get(a, -1), CLASS_RANK.get(b, -1)
            label_a, label_b = a or "unclassified", b or "unclassified"
            if rank_b < rank_a:
                self.add(
                    "governance",
                    where,
                    f"classification lowered from {label_a} to {label_b}: {VARIATION}",
                )
            elif b in PERSONAL_CLASSES:
                self.add(
                    "governance",
                    where,
                    f"classification raised from {label_a} to {label_b} (now {b} data): "
                    f"{VARIATION}",
                )
            else:
                self.add("additive", where, f"classification raised from {label_a} to {label_b}")
        was_special = old_name in self._special(self.old_agreement)
        is_special = name in self._special(self.new_agreement)
        if was_special != is_special:
            state = "now" if is_special else "no longer"
            self.add("governance", where, f"{state} listed as special-category data: {VARIATION}")
        was_pseudo = old_name in self._pseudonymised(self.old_agreement)
        is_pseudo = name in self._pseudonymised(self.new_agreement)
        if was_pseudo and not is_pseudo:
            self.add(
                "governance",
                where,
                f"no longer pseudonymised: the real value will be shared: {VARIATION}",
            )
        elif is_pseudo and not was_pseudo:
            self.add(
                "breaking",
                where,
                "now pseudonymised: curated values become keyed tokens, so existing joins "
                "and filters on the real value break",
            )

    def allowed_values(self, where: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        a, b = _valid_values(old), _valid_values(new)
        if a == b:
            return
        if b is None:
            self.add("additive", where, "no longer restricted to a list of allowed values")
        elif a is None:
            self.add("breaking", where, f"now restricted to {len(b)} allowed values")
        else:
            removed = [v for v in a if v not in b]
            added = [v for v in b if v not in a]
            if removed:
                self.add("breaking", where, f"allowed values removed: {_quote(removed)}")
            if added:
                self.add("additive", where, f"allowed values added: {_quote(added)}")

    # rules ---------------------------------------------------------------------------------

    def rules(self, where: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
        pairs, old_left, new_left = _pair_rules(old, new)
        # Allowed-values rules coming or going are reported as allowed values, not as rules.
        old_left = [r for r in old_left if rule_kind(r) != "invalidValues"]
        new_left = [r for r in new_left if rule_kind(r) != "invalidValues"]
        for rule in old_left:
            self.add("additive", where, f"rule {rule.get('name')!r} ({rule_kind(rule)}) removed")
        for rule in new_left:
            self.add("breaking", where, f"rule {rule.get('name')!r} ({rule_kind(rule)}) added")
        for a, b in pairs:
            label = f"rule {b.get('name')!r}"
            if a.get("name") != b.get("name"):
                self.add("editorial", where, f"rule {a.get('name')!r} renamed to {b.get('name')!r}")
            self.severity(where, label, a, b)
            kind = rule_kind(b)
            if kind == "missingValues":
                self.completeness(where, label, a, b)
            elif kind == "notBefore":
                if a.get("implementation") != b.get("implementation"):
                    self.add("breaking", where, f"{label}: columns compared changed")
            elif kind != "invalidValues":
                ignored = {"name", "description", "severity", "customProperties", "dimension"}
                if {k: v for k, v in a.items() if k not in ignored} != {
                    k: v for k, v in b.items() if k not in ignored
                }:
                    self.add("breaking", where, f"{label}: definition changed")
            if _norm(a.get("description")) != _norm(b.get("description")):
                self.add("editorial", where, f"{label}: description changed")

    def severity(self, where: str, label: str, a: dict[str, Any], b: dict[str, Any]) -> None:
        sa, sb = a.get("severity"), b.get("severity")
        if sa != sb:
            if SEVERITY_RANK.get(sb, 9) > SEVERITY_RANK.get(sa, 9):
                self.add("breaking", where, f"{label}: severity raised from {sa} to {sb}")
            else:
                self.add("additive", where, f"{label}: severity lowered from {sa} to {sb}")
        fa, fb = _custom(a).get("onFailure"), _custom(b).get("onFailure")
        if fa != fb:
            if ON_FAILURE_RANK.get(fb, 9) > ON_FAILURE_RANK.get(fa, 9):
                self.add("breaking", where, f"{label}: failing rows now {fb} (was {fa})")
            else:
                self.add("additive", where, f"{label}: failing rows now {fb} (was {fa})")

    def completeness(self, where: str, label: str, a: dict[str, Any], b: dict[str, Any]) -> None:
        la, lb = a.get("mustBeLessOrEqualTo"), b.get("mustBeLessOrEqualTo")
        if la != lb:
            if isinstance(la, int | float) and isinstance(lb, int | float) and lb > la:
                self.add("additive", where, f"{label}: missing-value limit raised {la}% -> {lb}%")
            else:
                self.add("breaking", where, f"{label}: missing-value limit lowered {la}% -> {lb}%")
        ma = _as_list((a.get("arguments") or {}).get("missingValues"))
        mb = _as_list((b.get("arguments") or {}).get("missingValues"))
        if [v for v in mb if v not in ma]:
            self.add("breaking", where, f"{label}: more values now count as missing")
        if [v for v in ma if v not in mb]:
            self.add("additive", where, f"{label}: fewer values now count as missing")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _rules(block: dict[str, Any]) -> list[dict[str, Any]]:
    return [q for q in _as_list(block.get("quality")) if isinstance(q, dict)]


def _pair_rules(
    old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Match rules by name, then the leftovers by kind (a renamed rule is the same rule)."""
    pairs = []
    old_left, new_left = list(old), list(new)
    for b in list(new_left):
        a = next((r for r in old_left if r.get("name") == b.get("name")), None)
        if a is not None:
            pairs.append((a, b))
            old_left.remove(a)
            new_left.remove(b)
    for b in list(new_left):
        same = [r for r in old_left if rule_kind(r) == rule_kind(b)]
        if len(same) == 1:
            pairs.append((same[0], b))
            old_left.remove(same[0])
            new_left.remove(b)
    return pairs, old_left, new_left


def _valid_values(prop: dict[str, Any]) -> list[str] | None:
    """The values the column may take (all its allowed-values rules together), or None."""
    allowed: list[str] | None = None
    for rule in _rules(prop):
        if rule_kind(rule) != "invalidValues":
            continue
        values = [str(v) for v in _as_list((rule.get("arguments") or {}).get("validValues"))]
        allowed = values if allowed is None else [v for v in allowed if v in values]
    return allowed


def _previous_names(prop: dict[str, Any]) -> list[str]:
    return [str(v) for v in _as_list(_custom(prop).get("previousNames"))]


def _duration_days(value: Any) -> float | None:
    parts = iso_duration_parts(str(value)) if value is not None else None
    if parts is None:
        return None
    per = {"years": 365.25, "months": 30.44, "weeks": 7, "days": 1, "hours": 1 / 24}
    return sum(per.get(k, 0) * v for k, v in parts.items())


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> DiffReport:
    """Compare two parsed contract documents."""
    agreement = _custom(new).get("sharingAgreement")
    reference = agreement.get("reference") if isinstance(agreement, dict) else None
    return DiffReport(
        name=str(new.get("name") or old.get("name") or "?"),
        old_version=str(old.get("version")),
        new_version=str(new.get("version")),
        agreement_reference=str(reference or ""),
        changes=_Differ(old, new).run(),
    )


def diff_files(old: Path, new: Path) -> DiffReport:
    """Compare two contract files (for example the published one and a proposed edit)."""
    docs = []
    for path in (old, new):
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a contract (the YAML is not a mapping)")
        docs.append(doc)
    return diff_documents(docs[0], docs[1])
