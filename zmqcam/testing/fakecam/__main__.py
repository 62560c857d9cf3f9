"""``python -m zmqcam.testing.fakecam``: see ``zmqcam.testing.fakecam.command``."""

import sys

from zmqcam.testing.fakecam.command import main

sys.exit(main())
