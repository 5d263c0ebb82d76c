"""Checks of the plug-in names in ``params.yaml`` against their registries, naming the key.

The parameter models (:mod:`.params`) know only types; a stage that uses a valuation method or
selection policies checks their names and parameters here when it loads its parameters, before
any work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kairos_curate.config import ParamsError
from kairos_curate.selection import SelectionSpec
from kairos_curate.valuation import get_method

__all__ = ["check_methods", "selection_specs"]


def selection_specs(
    selections: Mapping[str, Mapping[str, Any]], where: str = "value.selections"
) -> dict[str, SelectionSpec]:
    """Name -> :class:`SelectionSpec` for every entry; every problem reported at once."""
    specs, problems = {}, []
    for name, entry in selections.items():
        try:
            specs[name] = SelectionSpec.from_mapping(name, entry)
        except ParamsError as err:
            problems += [f"{where}.{line}" for line in err.problems]
    if problems:
        raise ParamsError(problems)
    return specs


def check_methods(methods: Sequence[str] | Mapping[str, Mapping[str, Any]], where: str) -> None:
    """Every method name registered (and, given a mapping, its parameters valid)."""
    items = methods.items() if isinstance(methods, Mapping) else ((name, None) for name in methods)
    problems = []
    for name, params in items:
        try:
            get_method(name, params)
        except ParamsError as err:
            problems += [
                f"{where}: {line.removeprefix('method: ')}" if line.startswith("method:") else f"{where}_params.{line}"
                for line in err.problems
            ]
    if problems:
        raise ParamsError(problems)
