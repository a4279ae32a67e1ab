"""The demo's files are the same bytes for the same arguments, whatever is done to make
them faster: one delivery of each contract, pinned by its SHA-256 as the generator wrote it
before timestamps were formatted only for the rows drawn and profiles parsed once a process.
A user who reruns the demo, or a test that compares two builds, relies on this."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from pipelines.demo.estate import demo_periods
from pipelines.demo.synthetic import write_delivery
from pipelines.demo.synthetic_profile import load_profile
from schemas.contract import load_contracts

# SHA-256 of the file the generator wrote for each contract's last demo period as of
# 15 January 2026 (300 rows, 1% of them defective, seeded by the contract's place in name
# order), with the code as it was before (commit f4d75f5).
TODAY = date(2026, 1, 15)
PINNED = {
    "borough_crime": "8cdbbb5d3163955148bbcfd3de82018472b03a30f04c92ee0ef38e34adfce0ad",
    "complaints": "69c0282b986c54a8331d0ac1de27fe4e12bd54f24306eac1da0a81bdc9df8d41",
    "crime_outcomes": "c68df8fa019f2bab01b3a3f2a5428ab8d9be223b128d1bf996086d11881a9a0d",
    "emergency_response": "e45f5974ebf87d9812417e0b26cb2195f6932fad4ef87561d95f09f220621b3e",
    "public_attitude_survey": "9033e01ec3d56de97d9a6e000c8cc3d4e8b7b84f13de703278c2b91025e47de0",
    "stop_and_search": "9db6bb1148ba6da418e165f0edc02a5e575771f07140acb393473f3b4993f792",
    "street_crime": "262cbcbc08d943477527067c5b765f854df81437fba1feb3f2ee9f0109ab99ad",
    "use_of_force": "7ee693a884ec2f9608fcdb64267cee6074a0a59b281a34c637409b26987f2d89",
    "workforce": "ea605610791568c868231adab3c2137de6bf2ab3ca9c49892bc230dcdf0eae22",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_a_delivery_is_the_same_bytes_as_before(tmp_path: Path, name: str) -> None:
    contracts = load_contracts()
    contract, seed = contracts[name], sorted(contracts).index(name)
    period = demo_periods(contract, 24, TODAY)[-1]
    path = tmp_path / f"{name}.csv"
    # Twice in one process: the second delivery uses the profile parsed for the first.
    for _ in range(2):
        write_delivery(contract, period, path, rows=300, seed=seed, defect_rate=0.01)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == PINNED[name]


def test_a_profile_changed_by_one_delivery_is_not_the_next_ones() -> None:
    """Each delivery gets its own copy of the parsed profile."""
    contract = load_contracts()["stop_and_search"]
    first = load_profile(contract)
    first["columns"].clear()
    assert load_profile(contract)["columns"], "the next delivery's profile lost its columns"
