"""README's quick start, as a new user on stock Debian 12 / Ubuntu 24.04 runs it.

Their ``/usr/bin/python3`` refuses ``pip install`` outside a virtual environment (PEP 668), so
``scripts/zmqcam-daemon`` makes ``./.venv`` itself. This test runs the first quick-start command from a
clean clone with Debian's own python3 first on PATH and nothing else set up; the second one
(``scripts/test``) is what CI runs, with the same python3 (``.ci/run``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.helpers import ROOT, free_port, needs, wait_for

SYSTEM_PYTHON = Path("/usr/bin/python3")


def _externally_managed(python: Path) -> bool:
    """Whether ``python`` carries the PEP 668 marker (its pip refuses to install outside a venv)."""
    if not python.exists():
        return False
    stdlib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


@pytest.mark.slow
def test_quick_start_runs_the_synthetic_rig_from_a_clean_clone_with_debians_python(tmp_path: Path) -> None:
    """`python3 -m pip install -e .` stopped at once with "externally-managed-environment" on the
    machines this mostly runs on; the quick start must work there exactly as written."""
    needs(_externally_managed(SYSTEM_PYTHON), "Debian's python3 with the PEP 668 marker (/usr/bin/python3)")
    clone = tmp_path / "zmqcam"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHON", "PYTHONPATH", "PYTHONHOME")
    }
    env["PATH"] = "/usr/bin:/bin"  # python3 is Debian's own, as on a fresh machine
    port = free_port()
    proc = subprocess.Popen(
        ["scripts/zmqcam-daemon", "start", "--port", str(port), "--run-dir", str(tmp_path / "run")],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def serving() -> bool:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            try:
                return requests.get(f"http://127.0.0.1:{port}/status", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        # the first run makes .venv and installs zmqcam into it
        wait_for(serving, 300, interval=0.5, message="the quick start's daemon to serve HTTP")
        with requests.get(f"http://127.0.0.1:{port}/snapshot.jpg", timeout=30) as r:
            assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert f"http://127.0.0.1:{port}/stream" in out
    # zmqcam went into the clone's .venv, nothing into the system Python
    assert (clone / ".venv" / "bin" / "python").exists()
    system = subprocess.run([str(SYSTEM_PYTHON), "-c", "import zmqcam"], capture_output=True, env=env, cwd="/")
    assert system.returncode != 0, "zmqcam was installed into the system Python"
    again = subprocess.run(
        ["scripts/zmqcam-daemon", "check-config", "config/zmqcam.toml"], cwd=clone, env=env, capture_output=True
    )
    assert again.returncode == 0, again.stderr
    assert b"installing" not in again.stderr, "the second run reinstalled zmqcam"
