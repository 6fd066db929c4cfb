"""The math: forward and hand-written backward of each op, on plain arrays.

Every function here takes numpy or cupy arrays and uses `xp_of(...)` to find the
array module, so one body serves the CPU and the GPU. Nothing here knows about
Tensor or the graph: that is `engine/`'s job. `kernels/cuda/` holds fused CUDA
versions of some of these, each tested against the reference here.
"""
