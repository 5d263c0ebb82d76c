"""Where the pipeline's files live, and strict validation of parameters read from ``params.yaml``.

Parameters are validated once, against typed models (pydantic, strict mode: ``"0.3"`` is not a
number, ``true`` is not a string, an unknown key is a typo), and the error names the key as it is
written in ``params.yaml`` (``value.budget``). The models themselves live with what they
configure: each stage's in :mod:`kairos_curate.stages.params`, each valuation method's and each
selection policy's next to its code.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "PATHS",
    "ParamsError",
    "Paths",
    "load_params",
    "none_if_default",
    "parse_bandwidth",
    "project_root",
    "validate_params",
]

T = TypeVar("T")


class ParamsError(ValueError):
    """A parameter has the wrong type or value, or is unknown; the message names it.

    ``problems`` holds one line per problem, each starting with the dotted key.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            super().__init__(f"invalid parameter {self.problems[0]}")
        else:
            super().__init__("invalid parameters:\n  " + "\n  ".join(self.problems))


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
    notebooks: Path = Path("reports/notebooks")


PATHS = Paths()


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read ``params.yaml`` as plain data (sections -> mappings)."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{file} not found; run from the project root or pass its path")
    with open(file) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as err:
            raise ParamsError(f"{file} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{file} must hold a mapping of sections (scenario:, embed:, ...)")
    return data


def _json_ready(value: Any) -> Any:
    """YAML data as JSON data; mapping keys become strings as JSON requires (validation casts back)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def validate_params(model: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Validate ``data`` against ``model`` (a pydantic model or dataclass), strictly.

    Validation runs in JSON mode so that YAML lists fill tuple fields and YAML mapping keys fill
    ``dict[int, ...]`` fields, while a string never passes for a number nor a number for a string.

    Parameters
    ----------
    model
        Pydantic ``BaseModel`` or pydantic dataclass.
    data
        The section (``None`` = empty: every default).
    where
        Dotted prefix of the keys in error messages (``"value"``, ``"policy herding"``; empty:
        the keys of ``data`` are top-level keys of ``params.yaml``).

    Raises
    ------
    ParamsError
        Every problem, one line each, naming ``where.key``, what was found and what is expected.
    """
    from pydantic import TypeAdapter, ValidationError

    if data is not None and not isinstance(data, Mapping):
        raise ParamsError(f"{where} must be a mapping of keys to values, got {data!r}")
    try:
        text = json.dumps(_json_ready(dict(data or {})))
    except TypeError as err:
        raise ParamsError(f"{where}: {err}") from None
    try:
        return TypeAdapter(model).validate_json(text)
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            key = ".".join(part for part in [where, *(str(p) for p in problem["loc"])] if part)
            found = problem.get("input")
            if problem["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
                lines.append(
                    f"{key}: unknown key (a typo?); known keys here: "
                    f"{', '.join(_field_names(model, problem['loc'][:-1]))}"
                )
            elif isinstance(found, Mapping) or problem["type"] == "value_error":
                error = problem.get("ctx", {}).get("error")
                if isinstance(error, ParamsError):  # a nested model's own problems, keys relative
                    lines += [f"{key}.{line}" if key else line for line in error.problems]
                else:
                    message = problem["msg"].removeprefix("Value error, ")
                    sub = re.match(r"^([A-Za-z_]\w*): (.*)$", message, re.S)  # "field: why" names a key inside
                    lines.append(f"{key}.{sub.group(1)}: {sub.group(2)}" if sub and key else f"{key}: {message}")
            else:
                lines.append(f"{key}: {problem['msg']} (got {found!r})")
        raise ParamsError(lines) from None


def _field_names(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc``; ``?`` when the path leaves the models."""
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is not None and part in fields:
            model = fields[part].annotation
        elif hasattr(model, "__pydantic_fields__") and part in model.__pydantic_fields__:
            model = model.__pydantic_fields__[part].annotation
        else:
            return ["?"]
    fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", None) or {}
    return sorted(fields) or ["(none: it takes no parameters)"]


def parse_bandwidth(value: Any, name: str) -> float | str:
    """Read an RBF bandwidth given as text or a number: ``"median"`` (the median heuristic,
    computed later) or a positive finite sigma. ``name`` (``--bandwidth``, ``value.bandwidth``)
    is named in the error."""
    if isinstance(value, str) and value.strip().lower() == "median":
        return "median"
    if isinstance(value, bool):
        raise ValueError(f"{name} must be 'median' or a positive number, got {value!r}")
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 'median' or a positive number, got {value!r}") from None
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{name} must be a positive number (finite, > 0), got {value!r}")
    return sigma


def none_if_default(value: Any) -> Any:
    """Map the spellings ``none``/``default``/``null``/empty (CLI flags, old params) to ``None``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in {"", "none", "null", "default"}:
        return None
    return value
