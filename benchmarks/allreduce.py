"""The step's Allreduce alone: median milliseconds of an in-place sum over the ranks of one float32
buffer the size of each preset's gradients (plus the loss), through tinygrad_gpt's own path; and,
for the cpu preset, mpi4py's pickle-based lowercase allreduce of the same array, for comparison.

    mpiexec -n 2 env python3 benchmarks/allreduce.py
"""

import statistics
import time

import numpy as np

from tinygrad_gpt.parallel import mpi

PARAMETERS = {"tiny": 28_576, "cpu": 809_856, "baby": 10_770_816}  # GPT.num_params() of each preset
REPEATS = 50

world = mpi.init()
for preset, count in PARAMETERS.items():
    buffer = np.zeros(count + 1, np.float32)
    times = []
    for _ in range(REPEATS + 5):  # the first five warm up
        start = time.perf_counter()
        world.allreduce_sum(buffer)
        times.append(time.perf_counter() - start)
    ms, mib = statistics.median(times[5:]) * 1e3, buffer.nbytes / 2**20
    print(f"{preset:>5}: {buffer.size:>10,} float32 ({mib:6.1f} MiB) in {ms:7.3f} ms on {world.size} ranks")

buffer = np.zeros(PARAMETERS["cpu"] + 1, np.float32)
times = []
for _ in range(REPEATS + 5):
    start = time.perf_counter()
    world.comm.allreduce(buffer)  # pickles the array, sums the objects, unpickles
    times.append(time.perf_counter() - start)
print(f"  cpu, pickled by mpi4py's lowercase allreduce: {statistics.median(times[5:]) * 1e3:7.3f} ms")
