"""scripts/bench.py must keep running: a --quick smoke of every section. No performance figure is
asserted here (they depend on the machine); only that each section produced numbers and ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SECTIONS = ("stitch", "bus", "e2e", "viewers", "idle", "wakeup", "memory", "calibrate", "h264")


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
    for label in (
        "1 stitch",
        "2 bus",
        "3 e2e",
        "4 viewers",
        "5 idle",
        "6 wake-up",
        "7 memory",
        "8 calibrate",
        "9 h264",
    ):
        assert label in proc.stdout


@pytest.mark.timeout(120)
def test_missing_baseline_libraries_are_one_line_and_a_note_in_the_table(tmp_path: Path) -> None:
    """After the quick start (no bench extra) the benchmarks still run: a baseline whose library is
    missing is skipped with one line naming the install command and a row saying so, never a
    traceback. The libraries are made missing by modules that fail to import as a missing one does."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    for module in ("imagezmq", "flask"):
        (shadow / f"{module}.py").write_text(
            f'raise ModuleNotFoundError("No module named {module}", name="{module}")\n'
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--only", "bus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    notes = [line for line in proc.stderr.splitlines() if line.startswith("bench: ")]
    assert notes == [
        "bench: imagezmq is not installed, so imagezmq PUB/SUB is skipped "
        "(scripts/bench installs it, or: pip install -e '.[bench]')",
        "bench: flask is not installed, so the rebuilt Flask original is skipped "
        "(scripts/bench installs it, or: pip install -e '.[bench]')",
    ]
    assert "not run: imagezmq is not installed (scripts/bench installs it" in proc.stdout
    assert "2 bus" in proc.stdout and "frames/s per sub" in proc.stdout  # zmqcam's own figures are there
