"""Write the values of an override file (e.g. configs/poster.yaml) into params.yaml.

    python scripts/apply_params.py configs/poster.yaml [--set section.key=value ...] [--params params.yaml]

Only the value of each named key changes: comments, order and every other line of params.yaml
stay as they are. The previous params.yaml is first copied to params.yaml.bak-<UTC time> (unless
nothing changes), so nothing a user wrote is lost. A key that params.yaml does not have is an
error (a typo would otherwise be ignored silently).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml


def _scalar(value: Any) -> str:
    """A YAML scalar for ``value``: strings double-quoted (JSON escaping is valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "none"
    return json.dumps(str(value))


def apply_overrides(text: str, overrides: dict[str, dict[str, Any]]) -> str:
    """``text`` (a two-level params.yaml) with the values of ``overrides`` written in."""
    lines = text.splitlines(keepends=True)
    section_of: list[str | None] = []
    section: str | None = None
    for line in lines:
        top = re.match(r"^([A-Za-z_][\w-]*):\s*(#.*)?$", line)
        if top:
            section = top.group(1)
        elif line.strip() and not line.startswith((" ", "#")):
            section = None
        section_of.append(section)
    for name, values in overrides.items():
        if not isinstance(values, dict):
            raise ValueError(f"override section {name!r} must be a mapping of keys to values")
        for key, value in values.items():
            pattern = re.compile(rf"^(\s+){re.escape(str(key))}:(\s*)([^#\n]*?)(\s*#.*)?(\r?\n)?$")
            hits = [i for i, line in enumerate(lines) if section_of[i] == name and pattern.match(line)]
            if len(hits) != 1:
                raise KeyError(f"params.yaml has no key {name}.{key} (or has it twice); check the spelling")
            m = pattern.match(lines[hits[0]])
            assert m is not None
            if yaml.safe_load(m.group(3) or "null") == value:
                continue  # same value: keep the line exactly as the user wrote it
            lines[hits[0]] = f"{m.group(1)}{key}: {_scalar(value)}{m.group(4) or ''}{m.group(5) or ''}"
    return "".join(lines)


def _parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"--set expects section.key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        section, key = dotted.split(".", 1)
        out.setdefault(section, {})[key] = yaml.safe_load(raw) if raw else ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="?", help="YAML file of section -> key -> value (e.g. configs/poster.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="one more override, applied after the file (repeatable)")
    parser.add_argument("--params", default="params.yaml", help="the file to update (default params.yaml)")
    args = parser.parse_args(argv)
    overrides: dict[str, dict[str, Any]] = {}
    if args.overrides:
        path = Path(args.overrides)
        if not path.is_file():
            parser.error(f"{path} not found")
        overrides = yaml.safe_load(path.read_text()) or {}
    for section, values in _parse_set(args.set).items():
        overrides.setdefault(section, {}).update(values)
    params = Path(args.params)
    text = params.read_text()
    try:
        new = apply_overrides(text, overrides)
    except (KeyError, ValueError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    yaml.safe_load(new)  # must still parse
    if new == text:
        print(f"{params}: already up to date")
        return 0
    backup = params.with_name(f"{params.name}.bak-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    shutil.copy2(params, backup)
    tmp = params.with_name(f".{params.name}.tmp")
    tmp.write_text(new)
    tmp.replace(params)
    changed = sum(a != b for a, b in zip(text.splitlines(), new.splitlines(), strict=True))
    print(f"{params}: {changed} value(s) changed; the previous version is in {backup}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
