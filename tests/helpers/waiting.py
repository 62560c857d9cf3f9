"""Waiting for a state instead of a time, and the rule for system tools a test needs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

#: CI (.ci/run) installs every system package the tests use, so there a missing one is a failure
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def needs(available: bool, reason: str) -> None:
    """Skip the calling test when a system tool it needs is missing, saying which; fail in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason}; .ci/run installs it, so in CI it must be there")
    pytest.skip(reason)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(interval)
