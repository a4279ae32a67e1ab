"""`datashare contracts lint|diff|show`: variants of stop_and_search.yaml built in tmp_path."""

from __future__ import annotations

import argparse
import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli.contracts import add_contracts_commands, run_contracts_command
from schemas.contract_diff import diff_documents
from schemas.contract_lint import lint_file
from schemas.contract_terms import Finding
from schemas.odcs_schema import odcs_schema

CONTRACTS = Path(__file__).resolve().parents[1] / "data_contracts"
BASE = CONTRACTS / "stop_and_search.yaml"
VARIATION = "needs a variation of the data-sharing agreement"

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def base() -> Doc:
    return yaml.safe_load(BASE.read_text(encoding="utf-8"))


def write(tmp_path: Path, doc: Doc, name: str = "stop_and_search") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def errors(tmp_path: Path, doc: Doc, name: str = "stop_and_search") -> list[Finding]:
    return [f for f in lint_file(write(tmp_path, doc, name)) if f.level == "error"]


def props(doc: Doc) -> list[dict[str, Any]]:
    return doc["schema"][0]["properties"]


def index(doc: Doc, column: str) -> int:
    return next(i for i, p in enumerate(props(doc)) if p["name"] == column)


def prop(doc: Doc, column: str) -> dict[str, Any]:
    return props(doc)[index(doc, column)]


def agreement(doc: Doc) -> dict[str, Any]:
    return doc["customProperties"][0]["value"]


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="datashare")
    add_contracts_commands(parser.add_subparsers(dest="command", required=True))
    return run_contracts_command(parser.parse_args(argv))


# --- lint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONTRACTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_real_contracts_lint_clean(path: Path) -> None:
    found = [str(f) for f in lint_file(path) if f.level == "error"]
    assert found == []


def test_the_odcs_schema_is_the_official_v3_1_0_draft_2019_09() -> None:
    schema = odcs_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    assert schema["properties"]["apiVersion"]["default"] == "v3.1.0"
    assert schema["$defs"]["SchemaProperty"]["unevaluatedProperties"] is False


def test_base_variant_is_clean(tmp_path: Path, base: Doc) -> None:
    assert errors(tmp_path, copy.deepcopy(base)) == []


def test_nested_typo_is_reported_with_file_and_path(tmp_path: Path, base: Doc) -> None:
    doc = copy.deepcopy(base)
    props(doc)[3]["logicalTypeOption"] = props(doc)[3].pop("logicalTypeOptions", {"x": 1})
    path = write(tmp_path, doc)
    assert [str(f) for f in lint_file(path)] == [
        f"{path}: schema[0].properties[3].logicalTypeOption: unknown field "
        "(did you mean logicalTypeOptions?)"
    ]


def _rename(block: dict[str, Any], old: str, new: str) -> None:
    block[new] = block.pop(old)


SCHEMA_FAULTS: dict[str, tuple[Callable[[Doc], None], str, str]] = {
    "typo in a property": (
        lambda d: _rename(prop(d, "gender"), "quality", "qualty"),
        "schema[0].properties[6].qualty",
        "unknown field (did you mean quality?)",
    ),
    "typo inside a rule": (
        lambda d: _rename(prop(d, "gender")["quality"][0], "arguments", "argments"),
        "schema[0].properties[6].quality[0].argments",
        "unknown field (did you mean arguments?)",
    ),
    "typo inside logicalTypeOptions": (
        lambda d: _rename(prop(d, "latitude")["logicalTypeOptions"], "maximum", "maximun"),
        "schema[0].properties[4].logicalTypeOptions.maximun",
        "unknown field (did you mean maximum?)",
    ),
    "typo in a team member": (
        lambda d: _rename(d["team"]["members"][0], "role", "rol"),
        "team.members[0].rol",
        "unknown field (did you mean role?)",
    ),
    "typo at the top": (
        lambda d: _rename(d, "description", "descripton"),
        "descripton",
        "unknown field (did you mean description?)",
    ),
    "unknown logical type": (
        lambda d: prop(d, "type").update(logicalType="str"),
        "schema[0].properties[0].logicalType",
        "'str' is not allowed",
    ),
    "wrong type of value": (
        lambda d: prop(d, "type").update(required="yes"),
        "schema[0].properties[0].required",
        "must be true or false",
    ),
    "two comparisons in one rule": (
        lambda d: prop(d, "gender")["quality"][0].update(mustBeLessOrEqualTo=3),
        "schema[0].properties[6].quality[0]",
        "use only one of: mustBe, mustBeLessOrEqualTo",
    ),
}


@pytest.mark.parametrize("fault", SCHEMA_FAULTS, ids=str)
def test_odcs_schema_faults_are_caught_with_their_path(
    tmp_path: Path, base: Doc, fault: str
) -> None:
    mutate, path, message = SCHEMA_FAULTS[fault]
    doc = copy.deepcopy(base)
    mutate(doc)
    found = errors(tmp_path, doc)
    assert any(f.path == path and message in f.message for f in found), [str(f) for f in found]


def _drop_member(doc: Doc, role: str) -> None:
    doc["team"]["members"] = [m for m in doc["team"]["members"] if m["role"] != role]


def _previous_names(doc: Doc, column: str, names: list[str]) -> None:
    prop(doc, column)["customProperties"] = [{"property": "previousNames", "value": names}]


AGREEMENT = "customProperties[0].value"
SCHEDULE = "customProperties[1].value"
OUR_FAULTS: dict[str, tuple[Callable[[Doc], None], str, str]] = {
    "agreement term missing": (
        lambda d: agreement(d).pop("lawfulBasis"),
        f"{AGREEMENT}.lawfulBasis",
        "missing or empty",
    ),
    "agreement term empty": (
        lambda d: agreement(d).update(purpose="  "),
        f"{AGREEMENT}.purpose",
        "missing or empty",
    ),
    "agreement term misspelt": (
        lambda d: _rename(agreement(d), "retentionClause", "retentionClaus"),
        f"{AGREEMENT}.retentionClaus",
        "did you mean retentionClause?",
    ),
    "special-category field that is no column": (
        lambda d: agreement(d)["specialCategoryFields"].append("religion"),
        f"{AGREEMENT}.specialCategoryFields[2]",
        "no column is named 'religion'",
    ),
    "pseudonymised field that is no column": (
        lambda d: agreement(d).update(pseudonymisedFields=["gendr"]),
        f"{AGREEMENT}.pseudonymisedFields[0]",
        "no column is named 'gendr' (did you mean gender?)",
    ),
    "special-category field not classified so": (
        lambda d: prop(d, "officer_defined_ethnicity").update(classification="personal"),
        "schema[0].properties[9].classification",
        "listed in sharingAgreement.specialCategoryFields but classified 'personal'",
    ),
    "special-category column not listed": (
        lambda d: prop(d, "gender").update(classification="special-category"),
        "schema[0].properties[6].classification",
        "not listed in sharingAgreement.specialCategoryFields",
    ),
    "pseudonymised column not personal": (
        lambda d: agreement(d).update(pseudonymisedFields=["policing_operation"]),
        f"{AGREEMENT}.pseudonymisedFields[0]",
        "classify it personal or special-category",
    ),
    "retention not ISO 8601": (
        lambda d: agreement(d).update(retention="6 years"),
        f"{AGREEMENT}.retention",
        "not an ISO 8601 duration",
    ),
    "no Article 9 condition for special-category data": (
        lambda d: agreement(d).update(lawfulBasis="UK GDPR Article 6(1)(e) public task."),
        f"{AGREEMENT}.lawfulBasis",
        "cites no Article 9 condition",
    ),
    "provider owner missing": (
        lambda d: agreement(d)["owners"].pop("provider"),
        f"{AGREEMENT}.owners.provider",
        "missing or empty",
    ),
    "no provider owner in the team": (
        lambda d: _drop_member(d, "provider owner"),
        "team.members",
        "no member has role 'provider owner'",
    ),
    "no recipient owner in the team": (
        lambda d: _drop_member(d, "recipient owner"),
        "team.members",
        "no member has role 'recipient owner'",
    ),
    "period not agreed": (
        lambda d: d["customProperties"][1]["value"].update(period="weekly"),
        f"{SCHEDULE}.period",
        "not a delivery period",
    ),
    "first period not YYYY-MM": (
        lambda d: d["customProperties"][1]["value"].update(firstPeriod="2019-13"),
        f"{SCHEDULE}.firstPeriod",
        "YYYY-MM",
    ),
    "due day past the 28th": (
        lambda d: d["customProperties"][1]["value"].update(dueDayOfFollowingMonth=30),
        f"{SCHEDULE}.dueDayOfFollowingMonth",
        "from 1 to 28",
    ),
    "custom property misspelt": (
        lambda d: d["customProperties"][1].update(property="deliverySchedul"),
        "customProperties[1].property",
        "did you mean deliverySchedule?",
    ),
    "severity not ours": (
        lambda d: prop(d, "gender")["quality"][0].update(severity="high"),
        "schema[0].properties[6].quality[0].severity",
        "not a severity",
    ),
    "onFailure not ours": (
        lambda d: prop(d, "gender")["quality"][0]["customProperties"][0].update(value="drop"),
        "schema[0].properties[6].quality[0].customProperties[0].value",
        "onFailure must be one of: quarantine, keep",
    ),
    "onFailure missing on a row rule": (
        lambda d: prop(d, "gender")["quality"][0].pop("customProperties"),
        "schema[0].properties[6].quality[0].customProperties",
        "a row rule must say onFailure",
    ),
    "rule the pipeline does not enforce": (
        lambda d: prop(d, "gender")["quality"].append(
            {"name": "gender_unique", "metric": "duplicateValues", "mustBe": 0}
        ),
        "schema[0].properties[6].quality[1]",
        "does not enforce 'duplicateValues'",
    ),
    "id not from the name": (
        lambda d: d.update(id="urn:datashare:mps-mopac:stop-search"),
        "id",
        "must be urn:datashare:mps-mopac:stop_and_search",
    ),
    "version not semantic": (
        lambda d: d.update(version="1.0"),
        "version",
        "semantic version",
    ),
    "header used twice": (
        lambda d: prop(d, "longitude").update(physicalName="Latitude"),
        "schema[0].properties[5].physicalName",
        "header 'Latitude' is already used by schema[0].properties[4]",
    ),
    "curated name not snake_case": (
        lambda d: prop(d, "gender").update(name="Gender"),
        "schema[0].properties[6].name",
        "must be snake_case",
    ),
    "curated name used twice": (
        lambda d: prop(d, "longitude").update(name="latitude"),
        "schema[0].properties[5].name",
        "curated name 'latitude' is already used",
    ),
    "previous name is another column's header": (
        lambda d: _previous_names(d, "gender", ["Age range"]),
        "schema[0].properties[6].customProperties[0].value[0]",
        "is the header of schema[0].properties[7]",
    ),
    "classification not ours": (
        lambda d: prop(d, "gender").update(classification="personel"),
        "schema[0].properties[6].classification",
        "did you mean personal?",
    ),
    "example outside the allowed values": (
        lambda d: prop(d, "type").update(examples=["Dog search"]),
        "schema[0].properties[0].examples[0]",
        "is not one of the allowed values",
    ),
    "wide layout column listed as a delivered column": (
        lambda d: d["schema"][0].update(
            customProperties=[
                {
                    "property": "layout",
                    "value": {
                        "type": "wide",
                        "valueColumnPattern": "^\\d{6}$",
                        "valueName": "type",
                    },
                }
            ]
        ),
        "schema[0].properties[0]",
        "made by the wide layout",
    ),
    "minimum above maximum": (
        lambda d: prop(d, "latitude")["logicalTypeOptions"].update(minimum=60),
        "schema[0].properties[4].logicalTypeOptions",
        "minimum 60 is above maximum 55.9",
    ),
}


@pytest.mark.parametrize("fault", OUR_FAULTS, ids=str)
def test_our_rules_are_caught_with_their_path(tmp_path: Path, base: Doc, fault: str) -> None:
    mutate, path, message = OUR_FAULTS[fault]
    doc = copy.deepcopy(base)
    mutate(doc)
    found = errors(tmp_path, doc)
    assert any(f.path == path and message in f.message for f in found), [str(f) for f in found]


def test_file_name_must_be_the_contract_name(tmp_path: Path, base: Doc) -> None:
    found = errors(tmp_path, copy.deepcopy(base), name="stop_search")
    assert [(f.path, f.message) for f in found] == [
        (
            "name",
            "the file is stop_search.yaml but name is 'stop_and_search': rename the file to "
            "stop_and_search.yaml or fix the name",
        )
    ]


def test_duplicate_yaml_keys_are_caught(tmp_path: Path) -> None:
    text = BASE.read_text(encoding="utf-8").replace(
        "        classification: personal\n        description: Gender",
        "        classification: personal\n        classification: public\n"
        "        description: Gender",
    )
    path = tmp_path / "stop_and_search.yaml"
    path.write_text(text, encoding="utf-8")
    assert any("key 'classification' appears twice" in str(f) for f in lint_file(path))


def test_lint_command_exit_codes(
    tmp_path: Path, base: Doc, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good", copy.deepcopy(base))
    assert cli("contracts", "lint", str(good)) == 0
    assert "1 contract checked: 0 errors" in capsys.readouterr().out

    doc = copy.deepcopy(base)
    _rename(prop(doc, "gender"), "quality", "qualty")
    bad = write(tmp_path / "bad", doc)
    assert cli("contracts", "lint", str(bad)) == 1
    out = capsys.readouterr().out
    assert f"{bad}: schema[0].properties[6].qualty: unknown field" in out
    assert "1 contract checked: 1 error, 0 warnings." in out


def test_lint_across_files_catches_a_reused_id(tmp_path: Path, base: Doc) -> None:
    from schemas.contract_lint import lint_files

    other = copy.deepcopy(base)
    other["name"] = "stop_and_search_copy"
    other["schema"][0]["name"] = "stop_and_search_copy"
    first = write(tmp_path, copy.deepcopy(base))
    second = write(tmp_path, other, "stop_and_search_copy")
    found = [f for f in lint_files([first, second]) if str(f.file) == str(second)]
    assert any(f.path == "schema[0].physicalName" and "already used" in f.message for f in found), (
        found
    )


# --- diff -----------------------------------------------------------------------------------


def diff(base: Doc, mutate: Callable[[Doc], None], version: str) -> Any:
    new = copy.deepcopy(base)
    mutate(new)
    new["version"] = version
    return diff_documents(copy.deepcopy(base), new)


def _narrow_latitude(d: Doc) -> None:
    prop(d, "latitude")["logicalTypeOptions"]["maximum"] = 52.0


def _new_column(d: Doc, **extra: Any) -> None:
    props(d).append(
        {"name": "borough", "physicalName": "Borough", "logicalType": "string", **extra}
    )


BREAKING: dict[str, Callable[[Doc], None]] = {
    "column removed": lambda d: props(d).pop(index(d, "policing_operation")),
    "type changed": lambda d: prop(d, "latitude").update(logicalType="string"),
    "valid value removed": lambda d: prop(d, "gender")["quality"][0]["arguments"][
        "validValues"
    ].remove("Other"),
    "column made required": lambda d: prop(d, "gender").update(required=True),
    "range narrowed": _narrow_latitude,
    "unique key added": lambda d: prop(d, "date").update(unique=True),
    "header renamed without previousNames": lambda d: prop(d, "gender").update(physicalName="Sex"),
    "new required column": lambda d: _new_column(d, required=True),
    "severity raised": lambda d: prop(d, "legislation")["quality"][0].update(severity="major"),
}


@pytest.mark.parametrize("change", BREAKING, ids=str)
def test_breaking_changes_need_a_major_bump(base: Doc, change: str) -> None:
    minor = diff(base, BREAKING[change], "1.1.0")
    assert minor.of("breaking"), minor.text()
    assert minor.required_bump == "major"
    assert not minor.ok
    assert "FAIL" in minor.text()
    assert diff(base, BREAKING[change], "2.0.0").ok


def test_header_renamed_with_previous_names_is_additive(base: Doc) -> None:
    def rename(d: Doc) -> None:
        prop(d, "gender").update(physicalName="Sex")
        _previous_names(d, "gender", ["Gender"])

    report = diff(base, rename, "1.1.0")
    assert report.ok, report.text()
    assert not report.of("breaking")
    assert any("still accepted" in c.message for c in report.of("additive"))


GOVERNANCE: dict[str, tuple[Callable[[Doc], None], str]] = {
    "new personal field": (
        lambda d: _new_column(d, classification="personal"),
        "new personal-data field",
    ),
    "new special-category field": (
        lambda d: (
            _new_column(d, classification="special-category"),
            agreement(d)["specialCategoryFields"].append("borough"),
        ),
        "new special-category field",
    ),
    "classification lowered": (
        lambda d: prop(d, "gender").update(classification="public"),
        "classification lowered from personal to public",
    ),
    "no longer pseudonymised": (
        lambda d: agreement(d).update(pseudonymisedFields=[]),
        "no longer pseudonymised",
    ),
    "longer retention": (
        lambda d: agreement(d).update(retention="P7Y"),
        "retention extended from P6Y to P7Y",
    ),
    "purpose changed": (
        lambda d: agreement(d).update(purpose="Any purpose MOPAC sees fit."),
        "the purpose of the sharing changed",
    ),
    "lawful basis changed": (
        lambda d: agreement(d).update(lawfulBasis="UK GDPR Article 6(1)(f); Article 9(2)(a)."),
        "the lawful basis changed",
    ),
    "new recipient": (
        lambda d: agreement(d)["owners"].update(recipient="Home Office"),
        "new recipient",
    ),
}


@pytest.mark.parametrize("change", GOVERNANCE, ids=str)
def test_governance_changes_need_a_variation_of_the_agreement(base: Doc, change: str) -> None:
    mutate, message = GOVERNANCE[change]
    start = copy.deepcopy(base)
    if change == "no longer pseudonymised":
        agreement(start)["pseudonymisedFields"] = ["policing_operation"]
    new = copy.deepcopy(start)
    mutate(new)
    new["version"] = "1.1.0"
    report = diff_documents(start, new)
    found = report.of("governance")
    assert any(message in c.message for c in found), report.text()
    text = report.text()
    assert "NEEDS A VARIATION OF THE DATA-SHARING AGREEMENT (MPS-MOPAC-DSA-003" in text
    assert report.required_bump in ("minor", "major")
    if change in ("new personal field", "new special-category field", "classification lowered"):
        assert any(VARIATION in c.message for c in found)
    patch = copy.deepcopy(new)
    patch["version"] = "1.0.1"
    assert not diff_documents(start, patch).ok


ADDITIVE: dict[str, Callable[[Doc], None]] = {
    "new optional column": lambda d: _new_column(d, classification="public"),
    "valid value added": lambda d: prop(d, "gender")["quality"][0]["arguments"][
        "validValues"
    ].append("Not stated"),
    "range widened": lambda d: prop(d, "latitude")["logicalTypeOptions"].update(maximum=60.0),
    "column no longer required": lambda d: prop(d, "outcome").update(required=False),
}


@pytest.mark.parametrize("change", ADDITIVE, ids=str)
def test_additive_changes_need_a_minor_bump(base: Doc, change: str) -> None:
    report = diff(base, ADDITIVE[change], "1.1.0")
    assert report.of("additive"), report.text()
    assert not report.of("breaking") and not report.of("governance"), report.text()
    assert report.ok
    assert not diff(base, ADDITIVE[change], "1.0.1").ok


def test_editorial_changes_need_a_patch_bump(base: Doc) -> None:
    def reword(d: Doc) -> None:
        prop(d, "gender")["description"] = "The gender of the person searched, as recorded."

    assert diff(base, reword, "1.0.1").ok
    unchanged = diff(base, reword, "1.0.0")
    assert [c.verdict for c in unchanged.changes] == ["editorial"]
    assert not unchanged.ok


def test_rewrapped_text_is_no_change(base: Doc) -> None:
    def rewrap(d: Doc) -> None:
        agreement(d)["purpose"] = agreement(d)["purpose"].replace(" ", "\n", 3)

    report = diff(base, rewrap, "1.0.0")
    assert report.changes == [] and report.ok


def test_diff_command_exit_codes(
    tmp_path: Path, base: Doc, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path / "old", copy.deepcopy(base))
    new_doc = copy.deepcopy(base)
    props(new_doc).pop(index(new_doc, "policing_operation"))
    new_doc["version"] = "1.1.0"
    new = write(tmp_path / "new", new_doc)
    assert cli("contracts", "diff", str(old), str(new)) == 1
    out = capsys.readouterr().out
    assert "column policing_operation: removed" in out
    assert "need a major bump (at least 2.0.0)" in out

    new_doc["version"] = "2.0.0"
    new = write(tmp_path / "new", new_doc)
    assert cli("contracts", "diff", str(old), str(new)) == 0


# --- show -----------------------------------------------------------------------------------


def test_show_renders_the_agreement(
    tmp_path: Path, base: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = copy.deepcopy(base)
    agreement(doc)["pseudonymisedFields"] = ["policing_operation"]
    prop(doc, "policing_operation")["classification"] = "personal"
    write(tmp_path, doc)
    monkeypatch.setenv("DATASHARE_CONTRACTS", str(tmp_path))
    output = tmp_path / "out" / "stop_and_search.md"
    assert cli("contracts", "show", "stop_and_search", "--output", str(output)) == 0
    page = output.read_text(encoding="utf-8")

    assert page.startswith("# Stop and search: data-sharing agreement")
    assert "| Agreement | MPS-MOPAC-DSA-003 (stop and search) |" in page
    assert "Statutory oversight of the MPS" in page  # purpose
    assert "UK GDPR Article 6(1)(e) public task" in page  # lawful basis
    assert "| Provider (sends the data) | MPS Stop and Search Data Team |" in page
    assert "| Recipient (receives the data) | MOPAC data-sharing lead |" in page
    assert "Monthly, starting with January 2019. Due by the 20th" in page
    assert "6 years (P6Y)" in page
    assert (
        "| Delivered header | Published as | Type | Required | Classification | "
        "Allowed values | Description |"
    ) in page
    assert "| `Gender` | `gender` | text | no | personal | one of: Male; Female; Other |" in page
    assert "**Special-category data**" in page
    assert "- `self_defined_ethnicity`, delivered as `Self-defined ethnicity`" in page
    assert "**Pseudonymised** (replaced by a keyed token" in page
    assert "personal (pseudonymised)" in page
    assert (
        "| self_defined_ethnicity_known | `self_defined_ethnicity` |" in page
        and "| minor | the row is published and the breach raised |" in page
    )
    assert "| type.required | `type` | Type is never blank | major | the row is held back" in page
    assert "| officer_defined_ethnicity_completeness |" in page
    assert "White - Gypsy or Irish Traveller" in page  # a long list of values, in full


def test_show_unknown_contract_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATASHARE_CONTRACTS", str(tmp_path))
    assert cli("contracts", "show", "nope") == 2
    assert "no contract 'nope'" in capsys.readouterr().err


def test_notice_response_days_is_a_whole_number_of_days(tmp_path: Path, base: Doc) -> None:
    doc = copy.deepcopy(base)
    agreement(doc)["noticeResponseDays"] = "ten"
    assert [f.message for f in errors(tmp_path, doc)] == [
        "must be a whole number of days from 1 to 365, not 'ten'"
    ]
    del agreement(doc)["noticeResponseDays"]
    warnings = [f for f in lint_file(write(tmp_path, doc)) if f.level == "warning"]
    assert any("no date to reply by" in f.message for f in warnings)


# --- clauses and counts a text claims (issue 20 item 10) -----------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Clause 9.2, records are kept for six years.",
         "cites clause 9.2, which the agreement page (datashare contracts show) does not have "
         "(clause 9 is Retention)"),
        ("Clause 10: records are kept for six years.",
         "cites clause 10 (Contacts), but the text is about something else: clause 9 is "
         "Retention"),
    ],
    ids=["no such clause", "the wrong clause"],
)  # fmt: skip
def test_lint_checks_each_clause_a_text_cites(
    tmp_path: Path, base: Doc, text: str, message: str
) -> None:
    doc = copy.deepcopy(base)
    agreement(doc)["retentionClause"] = text
    found = errors(tmp_path, doc)
    assert [(f.path, f.message) for f in found] == [
        ("customProperties[0].value.retentionClause", message)
    ]
    agreement(doc)["retentionClause"] = "Clause 9: records are kept for six years."
    assert errors(tmp_path, doc) == []
    # Anywhere in the contract: a column's description citing a rule on the page.
    prop(doc, "type")["description"] = "As clause 8.1.99 sets out."
    (finding,) = errors(tmp_path, doc)
    assert "cites clause 8.1.99" in finding.message
    prop(doc, "type")["description"] = "The search type, checked under clause 8.1.2."
    assert errors(tmp_path, doc) == []


def test_lint_checks_a_count_in_a_description_against_the_listed_values(
    tmp_path: Path, base: Doc
) -> None:
    doc = copy.deepcopy(base)
    prop(doc, "officer_defined_ethnicity")["description"] = "As perceived (5 groups)."
    (finding,) = errors(tmp_path, doc)
    assert finding.path == "schema[0].properties[9].description"
    assert finding.message == (
        "says (5 groups), but the column agrees 4 values: White, Black, Asian, Other"
    )
    # Values named apart in the description are not counted in the groups.
    rule = prop(doc, "officer_defined_ethnicity")["quality"][0]
    rule["arguments"]["validValues"].append("Not stated")
    prop(doc, "officer_defined_ethnicity")["description"] = (
        'As perceived (4 groups), or "Not stated".'
    )
    assert errors(tmp_path, doc) == []


@pytest.mark.parametrize("path", sorted(CONTRACTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_clause_the_agreement_page_cites_is_on_it(path: Path) -> None:
    from schemas.contract_page import render_file

    page = render_file(path)
    numbered = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\.? ", page, re.MULTILINE))
    numbered |= set(re.findall(r"^\| (\d+\.\d+\.\d+) \|", page, re.MULTILINE))
    cited = re.findall(r"\bclauses? (\d+(?:\.\d+)*)", page, re.IGNORECASE)
    assert cited and not [c for c in cited if c not in numbered]
    assert "## 9. Retention" in page and "## 10. Contacts" in page
    assert "clause 9 |" in page  # the summary table points at the retention clause
