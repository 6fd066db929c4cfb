"""cupy.cuda for the stand-in: FAKE_CUPY_DEVICES GPUs (default 1), one null stream, a memory pool
that counts the bytes of live arrays."""

import os
import weakref

_current = [0]
_ATTRIBUTES = {"MultiProcessorCount": 132, "MaxThreadsPerBlock": 1024, "MaxSharedMemoryPerBlock": 48 * 1024}


class CUDARuntimeError(RuntimeError):
    pass


class _Runtime:
    CUDARuntimeError = CUDARuntimeError

    @staticmethod
    def getDeviceCount():
        count = int(os.environ.get("FAKE_CUPY_DEVICES", "1"))
        if count == 0:
            raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return count

    @staticmethod
    def deviceSynchronize():
        pass

    @staticmethod
    def memGetInfo():
        return 80 << 30, 80 << 30


runtime = _Runtime()


class Device:
    def __init__(self, device=None):
        self.id = _current[0] if device is None else int(device)
        if not 0 <= self.id < runtime.getDeviceCount():
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self.attributes = dict(_ATTRIBUTES)
        self.compute_capability = "90"

    def use(self):
        _current[0] = self.id

    def __enter__(self):
        self._previous = _current[0]
        self.use()
        return self

    def __exit__(self, *exc):
        _current[0] = self._previous

    def synchronize(self):
        pass

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return self.id


class Stream:
    ptr = 0

    def synchronize(self):
        pass

    def use(self):
        return self


Stream.null = Stream()


from cupy.cuda import nccl  # noqa: E402,F401


def get_current_stream():
    return Stream.null


class _MemoryPool:
    """CuPy's pool in outline: live arrays' bytes are used, freed ones stay held until free_all_blocks."""

    def __init__(self):
        self._used = self._held = 0

    def _allocated(self, a):
        nbytes = -(-a.nbytes // 512) * 512
        self._used += nbytes
        weakref.finalize(a, self._freed, nbytes)

    def _freed(self, nbytes):
        self._used -= nbytes
        self._held += nbytes

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._used + self._held

    def free_bytes(self):
        return self._held

    def free_all_blocks(self):
        self._held = 0

    def set_limit(self, size=None, fraction=None):
        pass


_pool, _pinned = _MemoryPool(), _MemoryPool()


def get_default_memory_pool():
    return _pool


def get_default_pinned_memory_pool():
    return _pinned
