"""The selection study's decision log: the packaged file loads, and malformed entries are refused."""

from __future__ import annotations

import pytest

from kairos_curate.study.decisions import DECISION_KEYS, load_decisions


def _entry(**kw: object) -> str:
    e = {
        "when": "2026-12",
        "choice": "x",
        "decided_on": "development",
        "seen": ["development"],
        "evidence": "y",
        "adopted": True,
        **kw,
    }
    lines = [f"  - when: {e.pop('when')}"] + [f"    {k}: {v}" for k, v in e.items()]
    text = "decisions:\n" + "\n".join(lines) + "\n"
    return text.replace("True", "true").replace("False", "false").replace("'", "")


def test_the_packaged_log_loads_in_order_and_adopts_nothing_decided_on_held_out_seeds():
    log = load_decisions()
    assert list(log.columns) == list(DECISION_KEYS) and len(log) >= 6
    assert log.iloc[0]["adopted"] == "yes" and log.iloc[0]["seen"] == "development"
    assert not ((log["decided_on"] == "held_out") & (log["adopted"] == "yes")).any()
    assert set(log["seen"]) <= {"development", "development + held-out", "held-out"}


def test_a_well_formed_entry_loads():
    log = load_decisions(_entry(seen="[development, held_out]", adopted=False))
    assert log.iloc[0].to_dict()["seen"] == "development + held-out" and log.iloc[0]["adopted"] == "no"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("decisions: []\n", "non-empty list under 'decisions'"),
        (_entry().replace("    evidence: y\n", ""), r"entry 1: needs exactly the keys"),
        (_entry(decided_on="test"), "decided_on must be one of"),
        (_entry(seen="[test]"), "seen must be a non-empty list"),
        (_entry(decided_on="held_out", seen="[held_out]"), "cannot be adopted"),
        (_entry(adopted="maybe"), "adopted must be true or false"),
    ],
)
def test_malformed_entries_are_refused_with_the_entry_named(text, match):
    with pytest.raises(ValueError, match=match):
        load_decisions(text)
