"""A child asked to stop stops cleanly wherever its main thread is (``zmqcam.process``).

SIGTERM raises ``Shutdown`` in the main thread at whatever it is doing. When that is inside a C-level
destructor (pyzmq freeing a message, which the workers do for every frame) Python cannot propagate
the exception: it printed "Exception ignored in ... Shutdown: SIGTERM" with a traceback, and the child
kept running until the supervisor killed it. Real processes and real signals, many times over.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

#: a worker whose main thread spends its time creating and freeing ZeroMQ messages
_CHURN = """
import sys
import zmq
from zmqcam.config import default_config
from zmqcam.process import run_child, stop_requested

class Churn:
    def run(self, heartbeat=None):
        print("running", flush=True)
        while not stop_requested():
            for _ in range(1000):
                zmq.Frame(b"x" * 100)
        print("stopped", flush=True)

    def close(self):
        pass

    def can_term(self):
        return True

run_child("churn", default_config(sys.argv[1]), lambda ctx: Churn())
"""


def test_sigterm_stops_a_worker_cleanly_even_inside_a_destructor(tmp_path: Path) -> None:
    for attempt in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHURN, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, (attempt, err[-2000:])
        assert "Traceback" not in err and "Exception ignored" not in err, (attempt, err[-2000:])
