"""Files a run writes and reads safely: crash-safe replacement (atomic_write) and what a killed one
left behind, the out-dir's one-writer lock, and the checks on a path before it is read (a file,
not a FIFO or a device; and for a file small by nature, not a huge one)."""

import contextlib
import fcntl
import os
import re
import stat
import tempfile
from pathlib import Path

from tinygrad_gpt.errors import TinyGPTError

LOCK_FILE = ".lock"  # in an out-dir: held (flock) by the run that writes there


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


def remove_stale_temp_files(path):
    """Remove the temp files that atomic_write(path) left behind when it was killed (SIGKILL, a
    power loss: no `finally` ran), those of our own naming alone: `.NAME.XXXXXXXX.tmp`. For a
    folder with one writer only (an out-dir, under OutDirLock): another writer's temp file in
    progress would go too."""
    ours = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(path.parent):
            if ours.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def check_regular_file(path, error=TinyGPTError):
    """Raise `error` naming path where it is a FIFO, a device or a socket (after symlinks): a FIFO
    would block the read for ever, the others are no file to read. A missing path or a folder
    passes: the read that follows reports it as it always has."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise error(f"{path}: {kind}, not a regular file")


MAX_JSON_BYTES = 64 * 1024 * 1024  # tokenizer.json, config.json, a shard index: GPT-2's are a few MB


def read_small(path, error):
    """The bytes of a file that is small by nature (a tokenizer, a config, an index): one larger
    than MAX_JSON_BYTES, or no regular file (a folder, or a device or FIFO, which never ends), is
    refused with `error` before it is read (OSError if it is absent)."""
    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise error(f"{path}: not a regular file")
    if status.st_size > MAX_JSON_BYTES:
        raise error(f"{path}: {status.st_size} bytes; a file of this kind is {MAX_JSON_BYTES // 2**20} MiB at most")
    return Path(path).read_bytes()


class OutDirLock:
    """The one writer of an out-dir: an exclusive flock on out_dir/.lock, which holds the holder's
    pid. The kernel drops the lock when its holder ends in any way, so a killed run leaves no
    stale lock. acquire() takes it (creating .lock; out_dir must exist) or raises TinyGPTError
    naming the holder; release() (or leaving the `with`) lets it go. A forked child (a worker
    process) closes its copy at once: a flock belongs to the open file, which the child's copy
    would keep locked after the holder let go, or died."""

    held = set()  # the descriptors of the locks this process holds

    def __init__(self, out_dir):
        self.path, self.fd = Path(out_dir) / LOCK_FILE, None

    def acquire(self):
        if self.fd is not None:
            return
        check_regular_file(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise TinyGPTError(
                f"{self.path.parent} is in use by another training run (pid {holder or 'unknown'}); "
                "wait for it to end, or pick another --out-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        OutDirLock.held.add(fd)

    def release(self):
        if self.fd is not None:
            OutDirLock.held.discard(self.fd)
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _close_inherited_locks():
    for fd in OutDirLock.held:
        os.close(fd)
    OutDirLock.held.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)
