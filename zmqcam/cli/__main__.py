"""``python -m zmqcam.cli ...``: the same as ``zmqcam-daemon ...`` (``start --detach`` and the tests run it so)."""

import sys

from zmqcam.cli.main import main

sys.exit(main())
