"""The one TOML writer: config-shaped data as TOML text.

Used by ``import-config`` (the original JSON as commented TOML), by a recording's ``replay.toml``,
by ``calibrate``'s candidate lines, and by the tests and benchmarks that write configs. It writes
the shapes a zmqcam config has, nothing more: top-level tables, arrays of tables (``[[camera]]``),
and nested tables inline (``perspective = { ... }``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_toml", "toml_value"]


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key):
        return key
    return _toml_string(key)


def toml_value(value: Any) -> str:
    """One value as TOML: strings, numbers, booleans, lists and (inline) tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        # whole numbers as integers ([0, 92] rather than [0.0, 92.0]): the config reads them as floats
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def render_toml(
    data: Mapping[str, Any],
    *,
    header: str = "",
    comments: Mapping[str, str] | None = None,
    notes: Mapping[tuple[str, int], str] | None = None,
) -> str:
    """A config-shaped mapping as TOML: top-level tables, arrays of tables (``[[camera]]``), and
    nested tables written inline (``perspective = { ... }``). ``None`` values are left out (TOML has
    no null). ``comments`` ("table.key" -> text) go above a key where it first appears; ``notes``
    ((table, index) -> text) go at the end of one element of an array of tables."""
    comments = comments or {}
    notes = notes or {}
    lines = _comment(header) if header else []
    seen: set[str] = set()

    def body(table: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if value is None:
                continue
            path = f"{table}.{key}"
            if path in comments and path not in seen:
                seen.add(path)
                lines.extend(_comment(comments[path]))
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")

    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping) and not _is_table_array(v)}
    body("", scalars)
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{_toml_key(key)}]"]
            body(key, value)
        elif _is_table_array(value):
            for i, element in enumerate(value):
                lines += ["", f"[[{_toml_key(key)}]]"]
                body(key, element)
                if (key, i) in notes:
                    lines.extend(_comment(notes[(key, i)]))
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
