"""Compare the outputs of two `dvc repro` runs (two clones of this project), timings aside.

    python scripts/compare_repros.py /path/to/clone_a /path/to/clone_b

Compares every ``reports/metrics/*.json`` (keys naming a time left out), every
``reports/tables/*.csv`` (the same for columns) and every file under ``data/values`` (bytes).
Prints one line per file and exits 1 if anything differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

TIME_WORDS = ("second", "time", "wall", "elapsed", "generated", "duration", "timing")


def is_timing(key: str) -> bool:
    """Whether a metric key or table column holds a timing (``train_time_s``, ``seconds``...)."""
    k = key.lower()
    return any(w in k for w in TIME_WORDS) or k.endswith("_s") or "_s_" in k


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not is_timing(str(k))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def compare(a: Path, b: Path) -> list[tuple[str, bool]]:
    """``(relative path, identical)`` for every output of ``a`` (missing in ``b`` = different)."""
    out: list[tuple[str, bool]] = []
    for f in sorted((a / "reports/metrics").glob("*.json")):
        g = b / "reports/metrics" / f.name
        same = g.is_file() and _strip(json.loads(f.read_text())) == _strip(json.loads(g.read_text()))
        out.append((f"reports/metrics/{f.name}", same))
    for f in sorted((a / "reports/tables").glob("*.csv")):
        g = b / "reports/tables" / f.name
        same = False
        if g.is_file():
            x, y = pd.read_csv(f), pd.read_csv(g)
            cols = [c for c in x.columns if not is_timing(c)]
            same = list(x.columns) == list(y.columns) and x[cols].equals(y[cols])
        out.append((f"reports/tables/{f.name}", same))
    for f in sorted(p for p in (a / "data/values").glob("*") if p.is_file()):
        g = b / "data/values" / f.name
        digest = lambda p: hashlib.md5(p.read_bytes()).hexdigest()  # noqa: E731
        out.append((f"data/values/{f.name}", g.is_file() and digest(f) == digest(g)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: print a line per file, return 1 if any differs."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__)
        return 2
    rows = compare(Path(args[0]), Path(args[1]))
    for path, same in rows:
        print(f"{'same' if same else 'DIFF'}  {path}")
    n_same = sum(same for _, same in rows)
    print(f"{n_same} of {len(rows)} identical (timings aside)")
    return 0 if n_same == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
