"""README's references stay true: every test the Guarantees (and any other section) cite exists,
so a promise never points at a test that was renamed or removed. A citation is a backticked
``room/test_file.py::test_name``, or ``::test_name`` for another test of the file cited just before.
"""

from __future__ import annotations

import re

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
CITATION = re.compile(r"`((?:[\w/]+/)?test_\w+\.py)?(?:::(test_\w+))?`")


def citations() -> list[tuple[str, str | None]]:
    """(file under tests/, test name or None) for every citation, in order."""
    found: list[tuple[str, str | None]] = []
    last: str | None = None
    for match in CITATION.finditer(README):
        path, name = match.group(1), match.group(2)
        if path is None and name is None:
            continue
        if path is not None and "/" not in path and not path.startswith("test_"):
            continue
        path = (path or last or "").removeprefix("tests/") or None
        assert path is not None, f"`::{name}` cites no file before it"
        last = path
        found.append((path, name))
    return found


def test_every_cited_test_exists() -> None:
    cited = citations()
    assert len(cited) > 40, "the citations were not found"
    missing = []
    for path, name in cited:
        file = ROOT / "tests" / path
        if not file.is_file():
            missing.append(path)
        elif name is not None and not re.search(rf"^(?:async )?def {name}\(", file.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"README cites tests that do not exist: {missing}"
