"""Manifests: `<file>.manifest.json` beside a delivery, as the force computed it.

`{"rows": N, "sha256": "..."}`: the number of data rows and the SHA-256 of the file's
bytes. Intake keeps a copy beside the landing copy; after validation counted the rows,
a delivery whose bytes or row count disagree with its manifest (or whose manifest cannot
be read) has a critical breach, so it is held: recorded as `held`, never published, and
its conformance check fails with an error.
"""

from __future__ import annotations

import json

from pipelines.lake.register import Breach
from pipelines.lake.store import Lake


def read_manifest(lake: Lake, contract: str, period: str, delivery_id: str) -> dict | None:
    """The landed manifest of a delivery, parsed; None if the force sent none.

    A manifest that is not the agreed JSON comes back as `{"error": ...}`.
    """
    key = lake.manifest_path(contract, period, delivery_id)
    if not lake.exists(key):
        return None
    try:
        doc = json.loads(lake.read_bytes(key))
    except (ValueError, UnicodeDecodeError) as exc:
        return {"error": f"it is not valid JSON ({exc})"}
    if not isinstance(doc, dict) or not ({"rows", "sha256"} & set(doc)):
        return {"error": 'it does not have the agreed form {"rows": N, "sha256": "..."}'}
    return doc


def manifest_problems(manifest: dict, delivery_id: str, rows_delivered: int) -> list[str]:
    """What in the delivery disagrees with its manifest, in words."""
    if "error" in manifest:
        return [f"The manifest beside the file cannot be used: {manifest['error']}."]
    problems = []
    expected_sha = str(manifest.get("sha256", "")).lower().strip()
    if "sha256" in manifest and expected_sha != delivery_id:
        problems.append(
            f"The file's SHA-256 is {delivery_id[:12]}…, but the manifest says "
            f"{expected_sha[:12] or '(blank)'}…: the bytes received are not the bytes sent."
        )
    if "rows" in manifest:
        try:
            expected_rows = int(manifest["rows"])
        except (TypeError, ValueError):
            expected_rows = None
        if expected_rows != rows_delivered:
            said = manifest["rows"]
            said = repr(said) if said not in (None, "") else "nothing (its rows field is blank)"
            problems.append(
                f"The file has {rows_delivered:,} data rows, but the manifest says {said}."
            )
    return problems


def manifest_breaches(
    contract, period: str, delivery_id: str, lake: Lake, rows_delivered: int
) -> list[Breach]:
    """A critical breach if the delivery disagrees with its manifest; none without one.

    A critical breach holds the delivery back (see `delivery_verdicts.validate_pending`).
    """
    manifest = read_manifest(lake, contract.name, period, delivery_id)
    if manifest is None:
        return []
    problems = manifest_problems(manifest, delivery_id, rows_delivered)
    if not problems:
        return []
    return [
        Breach(
            contract=contract.name,
            contract_version=contract.version,
            period=period,
            delivery_id=delivery_id,
            rule="file.manifest",
            clause=f"{contract.path.name}: delivery manifest <file>.manifest.json",
            severity="critical",
            action="delivery held",
            failing_rows=rows_delivered,
            rows_checked=rows_delivered,
            detail=" ".join(problems) + " The delivery is held: nothing from it was "
            "published. Please send the file again with a matching manifest.",
        )
    ]
