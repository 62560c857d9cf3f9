"""What the tests share, imported normally: ``from tests.helpers import wait_for, Children, ...``.

tests.helpers.waiting     wait_for (a state, not a time), needs (the rule for system tools), IN_CI
tests.helpers.processes   Children (spawned like the supervisor spawns), reader_process, child_pids
tests.helpers.daemon      Daemon, cli, read_stream_parts, free_port, write_config, wait_running
tests.helpers.cameras     camera configs with short timeouts, opened, timed, require_rtsp
tests.helpers.bridge      the bridge on a free port and its /status
tests.helpers.status      status newer than an event, asserted inside the wait (bus_status, bridge_status)
tests.helpers.httpbridge  a bridge fed by a publisher in the test process (HTTP abuse and resources)
tests.helpers.images      psnr, shift_px: comparing pictures
tests.helpers.panorama    read_until a frame shows a state, source_states of a panorama's slots, all_live, ...

Fixtures are in ``tests/conftest.py``.
"""

from pathlib import Path

from tests.helpers.cameras import CONNECT_TIMEOUT, READ_TIMEOUT, camera, opened, require_rtsp, timed
from tests.helpers.daemon import Daemon, cli, free_port, read_stream_parts, wait_running, write_config
from tests.helpers.images import psnr, shift_px
from tests.helpers.processes import Children, child_pids, reader_process
from tests.helpers.status import bridge_status, bus_status, eventually
from tests.helpers.waiting import IN_CI, needs, wait_for

#: the repository's root (config/, scripts/, README.md)
ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "CONNECT_TIMEOUT",
    "IN_CI",
    "READ_TIMEOUT",
    "ROOT",
    "Children",
    "Daemon",
    "bridge_status",
    "bus_status",
    "camera",
    "child_pids",
    "cli",
    "eventually",
    "free_port",
    "needs",
    "opened",
    "psnr",
    "read_stream_parts",
    "reader_process",
    "require_rtsp",
    "shift_px",
    "timed",
    "wait_for",
    "wait_running",
    "write_config",
]
