"""The collectives data-parallel training needs, on one contiguous buffer each, per array backend:
MPI for host (numpy) arrays, NCCL for GPU (cupy) arrays, each behind the same four methods.

Every call is in place, or into a caller's buffer, and buffer-based (mpi4py's uppercase calls move
the array's memory as it is; the lowercase ones pickle it, which copies it and is far slower). A
rank that never joins a collective leaves the others waiting in it for ever: mpi.end_job ends the
job.
"""

from tinygrad_gpt.errors import DistributedError

NCCL_HINT = 'install it with: pip install -e ".[gpu]" (brings nvidia-nccl-cu12)'


class MPICollectives:
    """Collectives over an mpi4py communicator, on host arrays."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.comm, self._sum = comm, MPI.SUM
        self._in_place = MPI.IN_PLACE

    def allreduce_sum(self, buffer):
        self.comm.Allreduce(self._in_place, buffer, op=self._sum)

    def broadcast(self, buffer):
        """Rank 0's buffer into every rank's."""
        self.comm.Bcast(buffer, root=0)

    def reduce_scatter_sum(self, buffer, part):
        """The sum over ranks of buffer (size ranks x len(part)), each rank getting its part."""
        self.comm.Reduce_scatter_block(buffer, part, op=self._sum)

    def all_gather(self, buffer):
        """Every rank's part of buffer (its rank-th of `size` equal parts) into every rank's, in place."""
        self.comm.Allgather(self._in_place, buffer)


def _one_rank_per_gpu(comm, device, local_size, gpus):
    """Refuse, on every rank alike and before NCCL starts, a job in which two ranks of one machine
    would take the same GPU (one GPU seen and no CUDA_VISIBLE_DEVICES per rank): NCCL would refuse
    it (ncclInvalidUsage) only later, in its own words, on some ranks."""
    import os

    from mpi4py import MPI

    here = (MPI.Get_processor_name(), os.environ.get("CUDA_VISIBLE_DEVICES"), device)
    places = comm.allgather(here)
    if len(set(places)) < len(places):
        raise DistributedError(
            f"{local_size} ranks on this machine but {gpus} GPU{'s' if gpus > 1 else ''} for them, and NCCL "
            f"takes one rank per GPU: run at most {gpus} rank{'s' if gpus > 1 else ''} per machine (mpiexec -n), "
            "or give each rank its own GPU (CUDA_VISIBLE_DEVICES)"
        )


class NCCLCollectives:
    """Collectives over NCCL (cupy.cuda.nccl) on GPU arrays, queued on the current stream, one rank
    per GPU: the rank's index on its machine picks its device (unless each rank sees one GPU only,
    CUDA_VISIBLE_DEVICES set by a scheduler). NCCL's unique id is made on rank 0 and sent to the
    others over MPI before the communicator is built (llm.c's bootstrap).

    Never run: written without a GPU to try it on (see docs/scaling.md)."""

    def __init__(self, comm, local_rank, local_size):
        import cupy
        from cupy.cuda import nccl

        if not nccl.available:
            raise DistributedError(f"the cupy backend under MPI needs NCCL, which CuPy cannot load; {NCCL_HINT}")
        gpus = cupy.cuda.runtime.getDeviceCount()
        if gpus > 1 and local_size > gpus:
            raise DistributedError(f"{local_size} ranks on this machine but {gpus} GPUs: run one rank per GPU")
        device = local_rank if gpus > 1 else 0  # one: a scheduler may have given each rank its own
        _one_rank_per_gpu(comm, device, local_size, gpus)
        cupy.cuda.Device(device).use()
        unique_id = comm.bcast(nccl.get_unique_id() if comm.Get_rank() == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(comm.Get_size(), unique_id, comm.Get_rank())
        self._nccl, self._cupy = nccl, cupy
        self._types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def _args(self, buffer):
        return self._types[buffer.dtype.name], self._cupy.cuda.get_current_stream().ptr

    def allreduce_sum(self, buffer):
        kind, stream = self._args(buffer)
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, kind, self._nccl.NCCL_SUM, stream)

    def broadcast(self, buffer):
        kind, stream = self._args(buffer)
        self.comm.bcast(buffer.data.ptr, buffer.size, kind, 0, stream)

    def reduce_scatter_sum(self, buffer, part):
        kind, stream = self._args(buffer)
        self.comm.reduceScatter(buffer.data.ptr, part.data.ptr, part.size, kind, self._nccl.NCCL_SUM, stream)

    def all_gather(self, buffer):
        kind, stream = self._args(buffer)
        count = buffer.size // self.comm.size()
        part = buffer.data.ptr + self.comm.rank_id() * count * buffer.itemsize  # in place: NCCL's own rule
        self.comm.allGather(part, buffer.data.ptr, count, kind, stream)
