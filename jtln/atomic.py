"""One way to write a file so that readers see the old content or the new, never a part.

The data is written to a temporary file beside the target, flushed to disk,
then renamed over it (``os.replace`` is atomic on POSIX).  A crash or kill
midway leaves at most a stray ``.<name>.tmp<pid>`` file, never a truncated
target.
"""

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write to; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)
