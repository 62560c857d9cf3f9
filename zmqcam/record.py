"""``python -m zmqcam.record [-c CONFIG] [--cameras a,b] [--duration S] OUT_DIR``: the same command as
``zmqcam-daemon record``, for scripts that start it this way. Part of the CLI floor: nothing imports it.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from zmqcam.cli.main import main

    sys.exit(main(["record", *sys.argv[1:]]))
