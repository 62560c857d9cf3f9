"""Config problems as one line each: ``FILE: key.path: value: the rule it breaks``.

Shared by the TOML loader and the original JSON format's (whose key names differ, hence ``rename``),
so that whatever the user wrote, every problem reads the same way and no pydantic message or
traceback reaches them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError


def show_value(value: Any) -> str:
    """A value as the user wrote it, cut to keep the line short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def problem_line(label: str, path: str, value: Any, msg: str, rename: dict[str, str] | None = None) -> str:
    """One problem: the file, the key path (in the user's own key names), the value and the rule."""
    for new, old in (rename or {}).items():
        path = path.replace(new, old)
    return f"{label}: {path}: {show_value(value)}: {msg}"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _loc_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif any(c in str(part) for c in "[]()"):
            continue  # pydantic's name for a union member or validator, not a key of the file
        elif _BARE_KEY.match(str(part)):
            out += ("." if out else "") + str(part)
        else:
            # a key the user wrote with odd characters (a dot, a space, a newline) is quoted as
            # TOML would write it, so the message stays one unambiguous line
            out += ("." if out else "") + json.dumps(str(part))
    return out or "(top level)"


def pydantic_lines(exc: ValidationError, label: str, rename: dict[str, str] | None = None) -> list[str]:
    """One line per problem pydantic found, without repeats."""
    lines = []
    for err in exc.errors(include_url=False):
        # union members (e.g. "int | None") report once per member; the "none" one adds nothing
        if err["type"] == "none_required":
            continue
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        value = err.get("input", None) if err["type"] != "missing" else "(missing)"
        line = problem_line(label, _loc_path(tuple(err["loc"])), value, msg, rename)
        if line not in lines:
            lines.append(line)
    return lines
