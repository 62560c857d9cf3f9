"""``zmqcam-daemon``: the command line, a leaf package nothing in zmqcam imports.

zmqcam.cli.main    the parser and ``dispatch``: every error a user can cause becomes one line and an exit code
zmqcam.cli.common  the config arguments every command that needs the daemon's config takes
zmqcam.cli.<cmd>   one module per command: start, stop, status, reload, check_config, keygen,
                   record, calibrate, import_config; each has ``add_command(subparsers)``
"""
