"""Crash-safe file replacement, shared by the data cache and the checkpoints."""

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(files):
    """Write {path: bytes} so that a reader (or a crash) sees each file whole, old or new.

    Every file is first written to a temp file in its own folder and fsynced; only then are they
    renamed over their targets, back to back and in the given order (put a commit-point file,
    like config.json, last), and the folders fsynced so the renames survive a power loss.
    os.replace is atomic only within one filesystem, hence the temp file next to its target.
    """
    umask = os.umask(0)
    os.umask(umask)
    staged = []
    try:
        for path, data in files.items():
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes files private; give the usual permissions
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:  # left over only when something failed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for folder in {path.parent for _, path in staged}:
        fsync_dir(folder)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
