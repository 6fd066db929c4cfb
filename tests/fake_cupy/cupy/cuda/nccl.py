"""cupy.cuda.nccl for the stand-in: NCCL's communicator emulated over MPI (mpi4py's COMM_WORLD,
one NCCL rank per MPI rank). Like NCCL it refuses two ranks on one device (ncclInvalidUsage), and
it reads and writes the arrays through the raw addresses it is given, each checked to lie inside
a live array."""

import ctypes

import numpy

available = True
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
NCCL_FLOAT32, NCCL_FLOAT64 = 7, 8
_DTYPES = {NCCL_FLOAT32: numpy.float32, NCCL_FLOAT64: numpy.float64}


class NcclError(RuntimeError):
    pass


def get_unique_id():
    return tuple(numpy.random.default_rng().integers(0, 256, 128).tolist())


def _buffer(ptr, count, kind):
    """count elements of `kind` at device address ptr, as a NumPy view of the array holding them."""
    from cupy import _POINTERS

    dtype = numpy.dtype(_DTYPES[kind])
    end = ptr + count * dtype.itemsize
    for start, array in list(_POINTERS.items()):
        if start <= ptr and end <= start + array.nbytes:
            if array.dtype != dtype:
                raise NcclError(f"ncclInvalidArgument: a buffer of {array.dtype} passed as {dtype}")
            return numpy.ctypeslib.as_array((ctypes.c_char * (end - ptr)).from_address(ptr)).view(dtype)
    raise NcclError(f"ncclInvalidArgument: address {ptr:#x} ({count} elements) is in no live array")


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        from mpi4py import MPI

        from cupy import cuda

        self._comm, self._rank = MPI.COMM_WORLD, rank
        if self._comm.Get_size() != ndev or self._comm.Get_rank() != rank:
            raise NcclError("ncclInvalidArgument: ranks disagree with the MPI world the stand-in runs over")
        here = (MPI.Get_processor_name(), cuda.Device().id)
        places = self._comm.allgather(here)
        if places.count(here) > 1:
            other = next(r for r, p in enumerate(places) if p == here and r != rank)
            raise NcclError(
                f"ncclInvalidUsage: Duplicate GPU detected: rank {rank} and rank {other} both on CUDA device {here[1]}"
            )
        self._MPI = MPI

    def size(self):
        return self._comm.Get_size()

    def rank_id(self):
        return self._rank

    def _op(self, op):
        MPI = self._MPI
        return {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX, NCCL_MIN: MPI.MIN}[op]

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        send, recv = _buffer(sendbuf, count, datatype), _buffer(recvbuf, count, datatype)
        self._comm.Allreduce(self._MPI.IN_PLACE if sendbuf == recvbuf else send, recv, op=self._op(op))

    def bcast(self, buff, count, datatype, root, stream):
        self._comm.Bcast(_buffer(buff, count, datatype), root=root)

    def reduceScatter(self, sendbuf, recvbuf, recvcount, datatype, op, stream):
        send = _buffer(sendbuf, recvcount * self.size(), datatype)
        self._comm.Reduce_scatter_block(send, _buffer(recvbuf, recvcount, datatype), op=self._op(op))

    def allGather(self, sendbuf, recvbuf, sendcount, datatype, stream):
        recv = _buffer(recvbuf, sendcount * self.size(), datatype)
        in_place = sendbuf == recvbuf + self._rank * sendcount * recv.itemsize
        send = self._MPI.IN_PLACE if in_place else _buffer(sendbuf, sendcount, datatype)
        self._comm.Allgather(send, recv)

    def destroy(self):
        pass
