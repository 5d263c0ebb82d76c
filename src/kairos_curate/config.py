"""Paths of the pipeline's files and parsing of ``params.yaml`` values.

DVC passes parameters to the notebooks with ``papermill -p name value``; lists and maps are
written in ``params.yaml`` as comma-separated strings (DVC cannot interpolate YAML lists), and
the helpers here turn them back into Python values with errors that name the parameter.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "PATHS",
    "Paths",
    "load_params",
    "none_if_default",
    "parse_bandwidth",
    "parse_bool",
    "parse_list",
    "parse_map",
    "project_root",
]

T = TypeVar("T")


def project_root() -> Path:
    """The repository root: ``$KAIROS_ROOT``, else the nearest parent holding ``dvc.yaml``."""
    env = os.environ.get("KAIROS_ROOT")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


@dataclass(frozen=True)
class Paths:
    """Where each stage writes, relative to the project root."""

    prepared: Path = Path("data/prepared")
    truth: Path = Path("data/truth/truth.parquet")
    noisy_pool: Path = Path("data/prepared_noisy")
    noisy_truth: Path = Path("data/truth/truth_noisy.parquet")
    embeddings: Path = Path("data/embeddings")
    embedding_cache: Path = Path("data/cache/embeddings")
    values: Path = Path("data/values")
    finetune_cache: Path = Path("data/cache/finetune")
    metrics: Path = Path("reports/metrics")
    figures: Path = Path("reports/figures")
    tables: Path = Path("reports/tables")


PATHS = Paths()


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read ``params.yaml`` (for library/CLI use outside DVC)."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{file} not found; run from the project root or pass its path")
    with open(file) as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a mapping of sections")
    return data


def parse_list(value: Any, cast: Callable[[str], T], name: str) -> list[T]:
    """Parse ``"a,b,c"`` (or an actual list) into ``[cast(a), cast(b), cast(c)]``."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    out: list[T] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            out.append(cast(text))
        except ValueError:
            raise ValueError(f"parameter {name}: cannot read {text!r} as {getattr(cast, '__name__', cast)} "
                             f"(expected a comma-separated list like '0,1,2')") from None
    return out


def parse_map(value: Any, key: Callable[[str], Any], val: Callable[[str], Any], name: str) -> dict[Any, Any]:
    """Parse ``"k1:v1,k2:v2"`` (or a mapping) into ``{key(k1): val(v1), ...}``."""
    if isinstance(value, dict):
        return {key(str(k)): val(str(v)) for k, v in value.items()}
    out = {}
    for pair in str(value).split(","):
        if not pair.strip():
            continue
        if ":" not in pair:
            raise ValueError(f"parameter {name}: {pair!r} is not 'key:value' (expected e.g. '2:0,4:3')")
        k, v = pair.split(":", 1)
        try:
            out[key(k.strip())] = val(v.strip())
        except ValueError:
            raise ValueError(f"parameter {name}: cannot read {pair!r}") from None
    return out


def parse_bool(value: Any, name: str) -> bool:
    """Read a boolean parameter. DVC renders YAML booleans as ``true``/``false``, which papermill
    passes on as strings (and ``bool("false")`` is True), so strings are parsed explicitly."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"parameter {name}: expected true or false, got {value!r}")


def parse_bandwidth(value: Any, name: str) -> float | str:
    """Read an RBF bandwidth given as text or a number: ``"median"`` (the median heuristic,
    computed later) or a positive finite sigma. ``name`` (``--bandwidth``, ``value.bandwidth``)
    is named in the error."""
    if isinstance(value, str) and value.strip().lower() == "median":
        return "median"
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 'median' or a positive number, got {value!r}") from None
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{name} must be a positive number (finite, > 0), got {value!r}")
    return sigma


def none_if_default(value: Any) -> Any:
    """Map the ``params.yaml`` spellings ``none``/``default``/``null``/empty to ``None``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in {"", "none", "null", "default"}:
        return None
    return value
