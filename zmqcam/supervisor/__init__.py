"""The supervisor: ``zmqcam-daemon start`` and everything a running daemon owns.

zmqcam.supervisor.supervisor  the Supervisor (spawn, watch, restart, reload, stop) and ``serve``
zmqcam.supervisor.roles       --role: the child processes, endpoints and streams of each part
zmqcam.supervisor.run_dir     the run directory: private, locked, pid file, sockets, port checks
"""
