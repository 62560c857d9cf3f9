"""scripts/bench.py must keep running: a --quick smoke of every section. No performance figure is
asserted here (they depend on the machine); only that each section produced numbers and ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SECTIONS = ("stitch", "bus", "e2e", "viewers", "idle", "wakeup", "memory", "calibrate")


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in _numbers(v)]
    return []


def _ratios(value: object) -> list[float]:
    """Every number under a key naming a comparison with the baseline (or the goal)."""
    out: list[float] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if ("_vs_" in k or k.startswith("vs_") or k == "speedup") and isinstance(v, (int, float)):
                out.append(float(v))
            else:
                out.extend(_ratios(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(_ratios(v))
    return out


@pytest.mark.timeout(180)
def test_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True
    for name in SECTIONS:
        section = data.get(name)
        assert isinstance(section, dict), f"section {name} missing"
        assert "error" not in section, f"section {name}: {section.get('error')}"
        assert _numbers(section), f"section {name} has no figures"
        assert _ratios(section), f"section {name} has no ratio to a baseline"
        assert isinstance(section.get("goals"), dict) and section["goals"], f"section {name} states no goals"
    # the printed table has a row per section
    for label in ("1 stitch", "2 bus", "3 e2e", "4 viewers", "5 idle", "6 wake-up", "7 memory", "8 calibrate"):
        assert label in proc.stdout
