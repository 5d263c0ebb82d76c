"""Plug-ins: a registry type, the base of every plug-in class, and discovery of plug-in modules.

Valuation methods (:mod:`kairos_curate.valuation`) and selection policies
(:mod:`kairos_curate.selection`) are plug-ins: a class with a ``name``, a one-line
``description`` and a pydantic ``Params`` model (its only defaults; validated strictly), put in a
:class:`Registry` by its decorator. Every module of a plug-in package is imported with the
package, so adding a method or a policy is one new file (plus its parameters in ``params.yaml``).
Modules load in name order, so the registries fill the same way on every run.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from kairos_curate.config import ParamsError, validate_params

__all__ = ["PLUGIN_PACKAGES", "Plugin", "PluginParams", "Registry", "import_all"]

#: Packages whose modules are all imported when the package is (the stage deps follow this, too).
PLUGIN_PACKAGES = ("kairos_curate.valuation", "kairos_curate.selection")


class PluginParams(BaseModel):
    """Base of every plug-in's parameter model: strict types, unknown keys rejected, read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Plugin:
    """Base of a plug-in class: validated parameters in ``self.params``.

    Subclasses set ``name``, ``description`` and, if they take parameters, ``Params``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = PluginParams

    def __init__(self, params: Mapping[str, Any] | BaseModel | None = None) -> None:
        if isinstance(params, BaseModel):
            params = params.model_dump()
        self.params: Any = validate_params(self.Params, params, "")


P = TypeVar("P", bound=type[Plugin])


class Registry(dict[str, P], Generic[P]):
    """Name -> plug-in class, filled by :meth:`register` (a class decorator).

    Parameters
    ----------
    kind
        What the plug-ins are, for messages (``"valuation method"``).
    key
        The ``params.yaml`` key that names one (``"method"``), for messages.
    """

    def __init__(self, kind: str, key: str) -> None:
        super().__init__()
        self.kind, self.key = kind, key

    def register(self, cls: P) -> P:
        """Add ``cls`` under its ``name``; two different classes may not share a name."""
        name = getattr(cls, "name", None)
        if not name or not getattr(cls, "description", None):
            raise TypeError(f"{cls.__name__} must set the class attributes name and description")
        if name in self and self[name] is not cls:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self[name] = cls
        return cls

    def create(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """An instance of the plug-in ``name`` with validated ``params``."""
        if name not in self:
            raise ParamsError(f"{self.key}: unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name](params)


def import_all(package: str, path: Iterable[str]) -> list[str]:
    """Import every module of ``package`` (its ``__path__``); return their names."""
    names = sorted(info.name for info in pkgutil.iter_modules(list(path)) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
