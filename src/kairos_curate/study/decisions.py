"""The selection study's decision log: which choice was made when, on which seeds, after seeing what.

The log is data (``selection_decisions.yaml`` beside this module), appended to whenever a method
choice of the selection study is made or rejected; the report prints it so that a reader can tell
a choice made on development seeds from one made after the held-out seeds were seen.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd
import yaml

__all__ = ["DECISION_KEYS", "load_decisions"]

#: Keys of every entry, in the report's column order.
DECISION_KEYS = ("when", "choice", "decided_on", "seen", "evidence", "adopted")
_DECIDED_ON = {"development", "held_out", "none"}
_SPLITS = {"development", "held_out"}


def _check(entry: Any, i: int) -> None:
    where = f"selection_decisions.yaml entry {i + 1}"
    if not isinstance(entry, dict) or set(entry) != set(DECISION_KEYS):
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"{where}: needs exactly the keys {list(DECISION_KEYS)}, has {keys}")
    if entry["decided_on"] not in _DECIDED_ON:
        raise ValueError(f"{where}: decided_on must be one of {sorted(_DECIDED_ON)}, got {entry['decided_on']!r}")
    seen = entry["seen"]
    if not isinstance(seen, list) or not seen or not set(seen) <= _SPLITS:
        raise ValueError(f"{where}: seen must be a non-empty list of {sorted(_SPLITS)}, got {seen!r}")
    if entry["decided_on"] == "held_out" and entry["adopted"]:
        raise ValueError(f"{where}: a choice decided on the held-out seeds cannot be adopted (it would tune on them)")
    if not isinstance(entry["adopted"], bool):
        raise ValueError(f"{where}: adopted must be true or false, got {entry['adopted']!r}")


def load_decisions(text: str | None = None) -> pd.DataFrame:
    """The decision log as a table (one row per choice, in the order made; columns :data:`DECISION_KEYS`).

    ``text`` replaces the packaged YAML (tests). Raises ``ValueError`` naming the entry when one
    is malformed: missing keys, an unknown ``decided_on`` or split, or an adopted choice that was
    decided on the held-out seeds.
    """
    if text is None:
        text = resources.files("kairos_curate.study").joinpath("selection_decisions.yaml").read_text("utf-8")
    data = yaml.safe_load(text) or {}
    entries = data.get("decisions") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("selection_decisions.yaml: needs a non-empty list under 'decisions'")
    for i, entry in enumerate(entries):
        _check(entry, i)
    frame = pd.DataFrame(entries, columns=list(DECISION_KEYS))
    frame["seen"] = frame["seen"].map(lambda s: " + ".join(str(x).replace("_", "-") for x in s))
    frame["adopted"] = frame["adopted"].map({True: "yes", False: "no"})
    return frame
