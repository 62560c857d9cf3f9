"""Writing a file whole or not at all.

Other processes read the files zmqcam writes while it runs (the process table, the bridge's
address, a recording's manifest, an authorized key), and a crash may come at any moment: a reader
must see the old content or the new, never half of either. ``write_atomic`` writes a temporary file
beside the target and renames it over the target, which POSIX makes atomic.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, mode: int | None = None) -> Path:
    """Replace ``path`` with ``data`` (text as UTF-8) in one step; ``mode`` (e.g. 0o644) is set before
    the file appears under its name. The temporary name holds the pid, so two processes writing the
    same file never write into each other's temporary file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target
