"""Processes a test starts: zmqcam's own children (spawned like the supervisor spawns them), a
user's program reading a stream, and finding a daemon's children in /proc."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zmqcam.names import TITLE_PREFIX


class Children:
    """Child processes started with the spawn method, stopped and reaped after the test."""

    def __init__(self) -> None:
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self._mp = multiprocessing.get_context("spawn")

    def start(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> multiprocessing.process.BaseProcess:
        proc = self._mp.Process(target=target, args=args, kwargs=kwargs, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def stop(self, proc: multiprocessing.process.BaseProcess, timeout: float = 5.0) -> None:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout)
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(2)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


#: a user's program: read the stream once (say so on stdout), then keep reading until killed
_READER = """
import json, sys
from zmqcam import Subscriber
sub = Subscriber(sys.argv[1], **json.loads(sys.argv[2]))
ok, _ = sub.read(timeout=30)
print("reading" if ok else "nothing", flush=True)
while True:
    sub.read(timeout=1)
"""


@contextlib.contextmanager
def reader_process(stream: str, **subscriber: Any) -> Iterator[subprocess.Popen[str]]:
    """A process reading ``stream`` through ``Subscriber(stream, **subscriber)`` (string or path
    arguments: endpoint, kind, server_key, client_key), yielded once it has read a frame. Killed
    by its pid afterwards, whatever the test did to it (SIGKILL ends a SIGSTOPped process too)."""
    arguments = json.dumps({key: str(value) for key, value in subscriber.items()})
    proc = subprocess.Popen([sys.executable, "-c", _READER, stream, arguments], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "reading", "the reader got no frame"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def child_pids(pid: int) -> list[int]:
    """The live zmqcam processes (titled ``zmqcam:...``) whose parent is ``pid``, from /proc."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and title.startswith(TITLE_PREFIX.encode()):
            kids.append(int(entry.name))
    return kids
