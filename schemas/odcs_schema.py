"""The official ODCS v3.1.0 JSON schema (draft 2019-09), loaded from the
`open-data-contract-standard` package at run time, never copied here, and its faults in
plain words: structural faults and typos at any depth."""

import json
import re
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft201909Validator
from jsonschema.exceptions import ValidationError

from schemas.contract_terms import Finding, PathParts, did_you_mean, quoted, render_path

ODCS_API_VERSION = "v3.1.0"
ODCS_SCHEMA_PACKAGE = "open_data_contract_standard"
ODCS_SCHEMA_RESOURCE = "schema.json"

# --- the official ODCS schema -------------------------------------------------------------


@cache
def odcs_schema() -> dict[str, Any]:
    """The official ODCS v3.1.0 JSON schema, as shipped by `open-data-contract-standard`."""
    try:
        text = resources.files(ODCS_SCHEMA_PACKAGE).joinpath(ODCS_SCHEMA_RESOURCE).read_text()
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the ODCS JSON schema comes from the package open-data-contract-standard==3.1.2; "
            "install the project's dependencies (pip install -e .)"
        ) from exc
    schema = json.loads(text)
    shipped = schema.get("properties", {}).get("apiVersion", {}).get("default")
    if shipped != ODCS_API_VERSION:
        raise RuntimeError(
            f"the installed open-data-contract-standard ships the ODCS {shipped} schema, "
            f"but our contracts are {ODCS_API_VERSION}: pin open-data-contract-standard==3.1.2"
        )
    return schema


@cache
def odcs_validator() -> Draft201909Validator:
    """A draft 2019-09 validator (it honours `unevaluatedProperties`, so deep typos show)."""
    return Draft201909Validator(odcs_schema())


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _declared(node: Any, root: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str]:
    """Property names a schema node accepts, through $ref, allOf/anyOf/oneOf and if/then."""
    if not isinstance(node, dict):
        return set()
    names = set(node.get("properties") or {})
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        names |= _declared(_resolve(ref, root), root, seen | {ref})
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key) or []:
            names |= _declared(sub, root, seen)
    for key in ("then", "else"):
        names |= _declared(node.get(key), root, seen)
    return names


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    groups: dict[Any, list[ValidationError]] = {}
    for sub in error.context or []:
        groups.setdefault(sub.relative_schema_path[0], []).append(sub)
    return list(groups.values())


def _leaves(error: ValidationError) -> list[ValidationError]:
    """For oneOf/anyOf, the errors of the alternative that got furthest into the document."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [error]
    branches = _branches(error)

    def depth(errors: list[ValidationError]) -> int:
        return max(len(e.absolute_path) for e in errors)

    best = max(branches, key=lambda errors: (depth(errors), -len(errors)))
    if depth(best) <= len(error.absolute_path):
        return [error]
    return [leaf for e in best for leaf in _leaves(e)]


_TYPE_WORDS = {
    "boolean": "true or false",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "array": "a list",
    "object": "a mapping of fields",
    "null": "empty",
}


def _schema_messages(error: ValidationError) -> list[tuple[PathParts, str]]:
    """Plain-words messages for one schema error, each with the path it is about."""
    path: PathParts = tuple(error.absolute_path)
    instance = error.instance
    validator = error.validator
    if validator in ("additionalProperties", "unevaluatedProperties") and isinstance(
        instance, dict
    ):
        known = _declared(error.schema, odcs_schema())
        unknown = [k for k in instance if k not in known]
        if not unknown:
            found = re.findall(r"'([^']+)'", error.message.split("(", 1)[-1])
            unknown = [k for k in found if k in instance]
        return [
            ((*path, name), f"unknown field{did_you_mean(name, known)}") for name in unknown
        ] or [(path, error.message)]
    if validator == "required" and isinstance(instance, dict):
        return [
            ((*path, name), "required field is missing")
            for name in error.validator_value
            if name not in instance
        ]
    if validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        hint = did_you_mean(str(instance), [str(v) for v in error.validator_value])
        return [(path, f"{quoted(instance)} is not allowed; expected one of: {allowed}{hint}")]
    if validator == "type":
        wanted = error.validator_value
        wanted = wanted if isinstance(wanted, list) else [wanted]
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        if isinstance(instance, date):
            return [
                (path, f"must be {words}, not a YAML date: quote it ({instance.isoformat()!r})")
            ]
        return [(path, f"must be {words}, not {quoted(instance)}")]
    if validator in ("oneOf", "anyOf"):
        branches = _branches(error)
        if branches and all(all(e.validator == "required" for e in b) for b in branches):
            names = sorted({n for b in branches for e in b for n in e.validator_value})
            return [(path, f"needs one of: {', '.join(names)}")]
        if not error.context and isinstance(instance, dict):
            options = error.validator_value if isinstance(error.validator_value, list) else []
            singles = [
                o["required"][0]
                for o in options
                if isinstance(o, dict) and len(o.get("required") or []) == 1
            ]
            present = [n for n in singles if n in instance]
            if len(present) > 1:
                return [(path, f"use only one of: {', '.join(present)}")]
            return [(path, "matches more than one of the forms ODCS allows here")]
        forms = "; ".join(sorted({b[0].message[:80] for b in branches}))
        return [(path, f"does not match any form ODCS allows here ({forms})")]
    message = error.message
    if len(message) > 200:
        message = f"{validator} check failed ({quoted(error.validator_value, 80)})"
    return [(path, message)]


def _sort_key(parts: PathParts) -> tuple[tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) else (1, p) for p in parts)


def odcs_findings(doc: Any, file: str) -> list[Finding]:
    """Faults against the official ODCS v3.1.0 JSON schema, deduplicated, in path order."""
    seen: set[tuple[PathParts, str]] = set()
    found: list[tuple[PathParts, str]] = []
    for error in odcs_validator().iter_errors(doc):
        for leaf in _leaves(error):
            for parts, message in _schema_messages(leaf):
                if (parts, message) not in seen:
                    seen.add((parts, message))
                    found.append((parts, message))
    found.sort(key=lambda item: _sort_key(item[0]))
    return [Finding(file, render_path(parts), message) for parts, message in found]
