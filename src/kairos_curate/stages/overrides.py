"""Write the values of an override file (e.g. ``configs/poster.yaml``) into ``params.yaml``.

``python -m kairos_curate.stages.overrides configs/poster.yaml [--set a.b.c=value ...]``

A ruamel.yaml round trip: only the named values change; comments, order and every other key stay
as they are. Every override key must already exist in ``params.yaml`` (a typo is an error, not a
new key), and the result must pass every stage's parameter validation before it is written. The
previous ``params.yaml`` is first copied to ``params.yaml.bak-<UTC time>`` (unless nothing
changes), so nothing a user wrote is lost.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from kairos_curate.config import ParamsError

__all__ = ["apply_overrides", "main", "parse_set"]


def _yaml() -> Any:
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # long flow lists stay on one line, as params.yaml writes them
    rt.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _flow(value: Any) -> Any:
    """New lists and mappings in the flow style params.yaml uses (``[0.5, 1]``, ``{a: 1}``)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, list):
        seq = CommentedSeq([_flow(v) for v in value])
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        mapping = CommentedMap({k: _flow(v) for k, v in value.items()})
        mapping.fa.set_flow_style()
        return mapping
    return value


def _merge(target: Any, overrides: Mapping[str, Any], where: str, changed: list[str]) -> None:
    """Write ``overrides`` into the round-trip document ``target`` in place; record changed keys."""
    for key, value in overrides.items():
        path = f"{where}.{key}" if where else str(key)
        if not isinstance(target, MutableMapping) or key not in target:
            raise ParamsError(f"{path}: params.yaml has no such key (check the spelling)")
        if isinstance(value, Mapping) and isinstance(target[key], Mapping):
            _merge(target[key], value, path, changed)
        elif target[key] != value:
            target[key] = _flow(value)
            changed.append(path)


def apply_overrides(text: str, overrides: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``text`` (params.yaml) with the values of ``overrides`` written in, and the keys changed."""
    rt = _yaml()
    doc = rt.load(text)
    changed: list[str] = []
    _merge(doc, overrides, "", changed)
    out = io.StringIO()
    rt.dump(doc, out)
    return out.getvalue(), changed


def validate_all(text: str) -> None:
    """Every stage's parameters (types, keys, plug-ins) valid; raises naming each problem."""
    import importlib

    from kairos_curate.stages import STAGES

    params = yaml.safe_load(text)
    for stage in STAGES:
        importlib.import_module(f"kairos_curate.stages.{stage}").load(params)


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b.c=1", ...]`` as nested overrides (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        dotted, sep, raw = item.partition("=")
        if not sep or "." not in dotted:
            raise ValueError(f"--set expects section.key=value (e.g. finetune.epochs=3), got {item!r}")
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return out


def _deep_update(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def main(argv: Sequence[str] | None = None) -> int:
    """Apply an override file and ``--set`` values to params.yaml (exit 2 on an error)."""
    parser = argparse.ArgumentParser(
        prog="python -m kairos_curate.stages.overrides",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="?", help="YAML file of overrides (e.g. configs/poster.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="one more override, applied after the file (repeatable; nested keys with dots)",
    )
    parser.add_argument("--params", default="params.yaml", help="the file to update (default params.yaml)")
    args = parser.parse_args(argv)
    params = Path(args.params)
    try:
        overrides: dict[str, Any] = {}
        if args.overrides:
            source = Path(args.overrides)
            if not source.is_file():
                raise FileNotFoundError(f"{source} not found")
            overrides = yaml.safe_load(source.read_text()) or {}
        _deep_update(overrides, parse_set(args.set))
        text = params.read_text()
        new, changed = apply_overrides(text, overrides)
        validate_all(new)
    except (ParamsError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not changed:
        print(f"{params}: already up to date")
        return 0
    backup = params.with_name(f"{params.name}.bak-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    shutil.copy2(params, backup)
    tmp = params.with_name(f".{params.name}.tmp")
    tmp.write_text(new)
    tmp.replace(params)
    print(f"{params}: {len(changed)} value(s) changed ({', '.join(changed)}); the previous version is in {backup}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
