"""Speed of full training iterations (forward, backward, clip, AdamW) at a preset's shapes.

Each contender is a function returning a `step()` callable that runs one iteration on fixed
random tokens; `time_steps` times any such callable the same way, so another implementation
(say PyTorch, for comparison) only needs its own step function.
"""

import gc
import json
import resource
import statistics
import sys
import time

import numpy as np
from threadpoolctl import ThreadpoolController, threadpool_info

from tinygrad_gpt import engine
from tinygrad_gpt.config import CHAR_VOCAB_SIZE, preset_config
from tinygrad_gpt.engine import backend
from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.engine.memory import peak_bytes, saved_for_backward
from tinygrad_gpt.engine.profiler import profile as engine_profile
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.kernels.cpu import target as numba_target
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.optim import AdamW, clip_grad_norm_
from tinygrad_gpt.parallel import data_parallel, shard_workers
from tinygrad_gpt.parallel.mpi import World
from tinygrad_gpt.parallel.shards import DataParallel, default_shards, describe_shards
from tinygrad_gpt.parallel.zero import ShardedAdamW
from tinygrad_gpt.tools.flops import cpu_peak, gpu_peak, step_flops, total
from tinygrad_gpt.train import STEP_TIMEOUT_S

NEEDS_TORCH = "--vs-torch needs PyTorch, which is not importable here (pip install torch; never a dependency of ours)"
SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "batch_size")  # what `shape` may replace


def random_batch(config, seed=0):
    """Host int64 (x, y) of shape (batch_size, block_size), uniform over the vocabulary."""
    rng = np.random.default_rng(seed)
    shape = (config.batch_size, config.block_size)
    return rng.integers(0, CHAR_VOCAB_SIZE, shape), rng.integers(0, CHAR_VOCAB_SIZE, shape)


def tinygpt_step(config, seed=0, shards=1, world=None, zero=0):
    """One training iteration of our GPT on the active backend as a callable (the training loop's:
    forward and backward over `shards` threads, and the processes of `world`, clip, AdamW, or with
    zero=1 ZeRO-1's), the model and the optimizer."""
    model = GPT(
        GPTConfig(
            CHAR_VOCAB_SIZE, config.block_size, config.n_layer, config.n_head, config.n_embd, dropout=config.dropout
        ),
        seed=seed,
    )
    optimizer = AdamW(
        model.named_parameters(), lr=config.learning_rate, betas=(0.9, config.beta2), weight_decay=config.weight_decay
    )
    world = world or World()
    if zero:
        optimizer = ShardedAdamW(optimizer, world)
    x, y = random_batch(config, seed)  # host ids, sent to the device each step as training's are
    parallel, optimizer, params, sum_over = data_parallel(model, optimizer, world, shards, timeout=STEP_TIMEOUT_S)
    forward_backward = parallel or DataParallel(model, 1)

    def step():
        forward_backward.step(x, y, seed)
        clip_grad_norm_(params, config.grad_clip, sum_over)
        optimizer.step()
        optimizer.zero_grad()

    return step, model, optimizer


def time_steps(step, iters, warmup, synchronize=backend.synchronize):
    """Seconds per call of step(), iters times after warmup calls; the device is synchronized
    before each clock read so queued GPU work is counted where it belongs."""
    for _ in range(warmup):
        step()
    synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    return times


def peak_host_rss_mb(who=resource.RUSAGE_SELF):
    """This process's peak resident set size, or with RUSAGE_CHILDREN its largest ended child's
    (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def peak_device_mb():
    """GPU memory held by CuPy's default pool, or None on numpy. The pool keeps freed blocks
    for reuse instead of returning them, so what it holds is the high-water mark of array memory."""
    if backend.name() != "cupy":
        return None
    return backend.get_xp().get_default_memory_pool().total_bytes() / 2**20


def device_name():
    if backend.name() != "cupy":
        return "cpu"
    cuda = backend.get_xp().cuda
    return cuda.runtime.getDeviceProperties(cuda.Device().id)["name"].decode()


def cpu_kernels():
    """Which machine code NumPy, BLAS and Numba picked for this CPU (from its instruction sets,
    unless NPY_DISABLE_CPU_FEATURES, OPENBLAS_CORETYPE or NUMBA_CPU_NAME say otherwise), as one
    line: NumPy's float32 tanh (GELU's; its AVX2 loop is far slower than its AVX-512 one), NumPy's
    BLAS and its kernels, which multiply every matrix, and the CPU Numba compiles the cpu kernels for."""
    introspect = getattr(np.lib, "introspect", None)  # NumPy >= 2.1
    tanh = introspect.opt_func_info(func_name="^tanh$", signature="float32") if introspect else {}
    target = next(iter(tanh.get("tanh", {}).values()), {}).get("current", "unknown")
    blas = next((b for b in threadpool_info() if b["user_api"] == "blas"), None)
    blas = f"{blas['internal_api']} {blas['version']} {blas.get('architecture', '')}".rstrip() if blas else "unknown"
    numba = numba_target()
    return f"NumPy float32 tanh {target}, BLAS {blas}" + (f", {numba}" if numba else "")


def bench(preset, iters=10, warmup=2, vs_torch=False, profile=False, world=None, zero=0, shape=None):
    """Time `iters` training iterations of `preset` on the active backend; a dict of results.
    shape: sizes that replace the preset's (any of SHAPE_FIELDS), for a model of another size.
    With a world of several processes (distributed.init() under mpiexec), the step is theirs (with
    zero=1 ZeRO-1's), and the Allreduce of its gradients is also timed alone. optimizer_mb: what
    AdamW's moments take in this process.

    vs_torch: also time the same model and recipe in PyTorch eager on the same device (_vs_torch).
    profile: add a per-op table of the one-thread step's time (_profile), and one of the memory
    each op keeps for the backward, with the step's peak.
    """
    if iters < 1 or warmup < 0:
        raise UsageError(f"--iters must be >= 1 and --warmup >= 0, got {iters} and {warmup}")
    world = world or World()
    world.timeout = world.timeout or STEP_TIMEOUT_S  # a rank that stops answering ends the job, as in training
    if world.distributed and (vs_torch or profile):
        raise UsageError("--vs-torch and --profile time one process: run them without mpiexec")
    try:
        config = preset_config(preset, **(shape or {}))
        GPTConfig(CHAR_VOCAB_SIZE, config.block_size, config.n_layer, config.n_head, config.n_embd)
    except ValueError as e:
        raise UsageError(str(e)) from None
    shards = default_shards(config.batch_size // world.size, world.local_size)
    backend.keep_freed_host_memory()  # as training does
    step, model, optimizer = tinygpt_step(config, shards=shards, world=world, zero=zero)
    kernels = kernels_for(model.transformer.wte.weight.data).name
    result = {
        "preset": preset,
        "backend": backend.name(),
        "device": device_name(),
        "iters": iters,
        "warmup": warmup,
        **{name: getattr(config, name) for name in SHAPE_FIELDS},
        "cpu_kernels": cpu_kernels() if backend.name() == "numpy" else None,
        "shards": shards,  # per process
        "shard_workers": None if shards == 1 else shard_workers(world),
        "processes": world.size,
        "zero": zero,
        "optimizer_mb": sum(a.nbytes for m in (optimizer.exp_avg, optimizer.exp_avg_sq) for a in m.values()) / 2**20,
        "kernels": kernels,
    }
    if vs_torch:
        times, result["torch"], host_mb = _vs_torch(step, model, config, iters, warmup)
    else:
        times = time_steps(step, iters, warmup)
        host_mb = peak_host_rss_mb()
    if result["shard_workers"] == "processes":
        del step, optimizer  # and with them the worker processes, so that their peak memory can be read
        gc.collect()
        result["worker_peak_rss_mb"] = peak_host_rss_mb(resource.RUSAGE_CHILDREN)
    seconds = statistics.median(times)
    device_mb = peak_device_mb()
    result.update(
        {
            "ms_per_iter": seconds * 1e3,
            "tokens_per_s": config.batch_size * config.block_size / seconds,
            "peak_mem_mb": device_mb if device_mb is not None else host_mb,
            "peak_host_rss_mb": host_mb,
        }
    )
    result.update(_mfu(config, seconds))
    if world.distributed:
        gradients = backend.get_xp().zeros(model.num_params() + 1, np.float32)  # what a step all-reduces
        allreduce = time_steps(lambda: world.allreduce_sum(gradients), iters, warmup)
        result["allreduce_ms"] = statistics.median(allreduce) * 1e3
    if "torch" in result:
        result["ratio_vs_torch"] = result["ms_per_iter"] / result["torch"]["ms_per_iter"]
    if profile:  # of the one-thread step: the profiler times ops one after another
        serial_step, serial_model, _ = tinygpt_step(config)
        result["profile"] = _profile(serial_step, iters, config)
        result["memory"] = _kept_for_backward(serial_model, config)
        # above the parameters and AdamW's moments, which outlive the step
        result["memory"]["step_peak_mb"] = peak_bytes(serial_step) / 2**20
    return result


def _profile(step, iters, config):
    """The time of `iters` calls of a one-shard step per op, with BLAS held to one thread (else it
    would take every core, under the ops' clocks, while the rest of the step runs on one) and after
    an unprofiled call (the first allocates what later ones reuse): a table whose total is the
    profiled steps' own time, its ms/iter, the steps' ms/iter by their own clock, and BLAS's
    thread counts read inside the profile."""
    blas = ThreadpoolController().select(user_api="blas")
    with blas.limit(limits=1):
        time_steps(step, 0, 1)
        with engine_profile() as prof:
            times = time_steps(step, iters, 0)
            blas_threads = [library["num_threads"] for library in blas.info()]
    return {
        "table": prof.table(),
        "flops_table": _flops_table(prof, iters, config),
        "ms_per_iter": prof.total / iters * 1e3,
        "steps_ms_per_iter": sum(times) / iters * 1e3,
        "blas_threads": blas_threads,
    }


def _peak(cores=None):
    """The device's FP32 peak in FLOPs per second (on the CPU, of `cores` cores, default this
    process's) and how it was reckoned (tools/flops.py)."""
    if backend.name() == "cupy":
        return gpu_peak()
    blas = next((b for b in threadpool_info() if b["user_api"] == "blas"), {})
    return cpu_peak(cores=cores, blas_core=blas.get("architecture"))


def _mfu(config, seconds):
    """The step's FLOPs counted from its shapes, their rate, and that rate's share of the peak."""
    flops = total(step_flops(config, config.batch_size, CHAR_VOCAB_SIZE))
    peak, how = _peak()
    return {
        "flops_per_iter": flops,
        "flops_per_s": flops / seconds,
        "peak_flops_per_s": peak,
        "peak": how,
        "mfu": flops / seconds / peak if peak else None,
    }


def _flops_table(prof, iters, config):
    """Each op's FLOPs a step and their rate in the profiled one-thread step, against one core's
    peak (the whole device's on a GPU), so that an op far below the roof stands out."""
    peak, _ = _peak(cores=1)
    lines = [f"{'op':<16}{'pass':<10}{'GFLOP':>9}{'GFLOP/s':>10}{'of peak':>9}"]
    counted = step_flops(config, config.batch_size, CHAR_VOCAB_SIZE)
    for op, passes in counted.items():
        for phase, flops in passes.items():
            seconds = prof.seconds.get((op, phase), 0.0) / iters
            if flops and seconds:
                rate = flops / seconds
                share = f"{rate / peak:>9.1%}" if peak else f"{'':>9}"
                lines.append(f"{op:<16}{phase:<10}{flops / 1e9:>9.3f}{rate / 1e9:>10.2f}{share}")
    return "\n".join(lines)


def _kept_for_backward(model, config):
    """What the training step's forward keeps for its backward on the benchmark batch: a table, the
    MB per op and in all, and the MB of parameters the graph holds (not in the total)."""
    x, y = (backend.asarray(a) for a in random_batch(config))
    _, loss = model(x, y)
    kept = saved_for_backward(loss)  # the graph is dropped with `loss` on return, never walked
    return {
        "table": kept.table(),
        "kept_mb_by_op": {op: nbytes / 2**20 for op, nbytes in kept.by_op.items()},
        "kept_mb": kept.total / 2**20,
        "parameters_mb": kept.parameters / 2**20,
    }


def _vs_torch(step, model, config, iters, warmup):
    """Our step and its PyTorch twin (tinygrad_gpt/tools/torch_twin.py, built from our initial
    weights on our device) timed in blocks taking turns, ours then PyTorch's, so that neither always
    runs on a cold cache or beside the other's still-spinning threads: our seconds per step, the
    twin's results, and our peak host RSS, read before PyTorch is imported into this process."""
    weights = {name: backend.to_numpy(a).copy() for name, a in model.state_dict().items()}
    first_loss = _first_loss(model, config)
    time_steps(step, 0, max(warmup, 1))
    host_mb = peak_host_rss_mb()
    try:
        from tinygrad_gpt.tools.torch_twin import TorchTwin
    except ImportError:
        raise UsageError(NEEDS_TORCH) from None
    device = "cuda" if backend.name() == "cupy" else "cpu"
    twin = TorchTwin(model.config, config, weights, *random_batch(config), device)
    time_steps(twin.step, 0, warmup, twin.synchronize)
    times, torch_times = [], []
    block = max(1, iters // 5)
    while len(times) < iters:
        times += time_steps(step, block, 0)
        torch_times += time_steps(twin.step, block, 0, twin.synchronize)
    torch = {
        "version": twin.version,
        "ms_per_iter": statistics.median(torch_times[:iters]) * 1e3,
        "first_loss_diff": abs(twin.first_loss - first_loss),
        "peak_mem_mb": twin.peak_mem_mb(),
    }
    return times[:iters], torch, host_mb


def _first_loss(model, config):
    """The loss our model gives on the benchmark batch right now, without dropout or a graph."""
    x, y = (backend.asarray(a) for a in random_batch(config))
    model.eval()
    with engine.no_grad():
        loss = model(x, y)[1].item()
    model.train()
    return loss


def report(result, as_json=False):
    """Print a result for people, and with as_json one JSON line last for scripts."""
    memory = "GPU memory pool" if result["backend"] == "cupy" else "host RSS"
    processes = f", {result['processes']} processes" if result["processes"] > 1 else ""
    processes += ", ZeRO-1" if result["zero"] else ""
    threads = describe_shards(result["shards"], result["shard_workers"], each=bool(processes))
    print(
        f"{result['preset']} preset on {result['backend']} ({result['device']}{processes}{threads}, "
        f"{result['kernels']} kernels), "
        f"{result['n_layer']} layers x {result['n_embd']} wide ({result['n_head']} heads), "
        f"batch {result['batch_size']} x block {result['block_size']}, median of {result['iters']} iterations:"
    )
    if result["cpu_kernels"]:
        print(f"  {result['cpu_kernels']}")
    print(
        f"  {result['ms_per_iter']:.1f} ms/iter, {result['tokens_per_s']:,.0f} tokens/s, "
        f"peak {memory} {result['peak_mem_mb']:.0f} MB, AdamW's moments {result['optimizer_mb']:.2f} MB"
    )
    if result["mfu"] is not None:
        print(
            f"  {result['flops_per_iter'] / 1e9:.2f} GFLOP/iter (tools/flops.py), "
            f"{result['flops_per_s'] / 1e9:.1f} GFLOP/s: MFU {result['mfu']:.1%} "
            f"of a {result['peak_flops_per_s'] / 1e9:.0f} GFLOP/s peak ({result['peak']})"
        )
    if "worker_peak_rss_mb" in result:
        print(f"  peak host RSS of a worker process {result['worker_peak_rss_mb']:.0f} MB")
    if "allreduce_ms" in result:
        print(f"  the step's Allreduce alone (every gradient and the loss): {result['allreduce_ms']:.2f} ms")
    if "torch" in result:
        torch = result["torch"]
        memory_note = f", peak {memory} {torch['peak_mem_mb']:.0f} MB" if torch["peak_mem_mb"] is not None else ""
        print(
            f"  PyTorch {torch['version']} eager, same model, recipe and device, interleaved: "
            f"{torch['ms_per_iter']:.1f} ms/iter{memory_note}"
        )
        print(
            f"  ratio ours/PyTorch: {result['ratio_vs_torch']:.2f} "
            f"(first losses differ by {torch['first_loss_diff']:.1e})"
        )
    if "profile" in result:
        profile = result["profile"]
        print(
            f"where {result['iters']} iterations of the one-thread step (1 shard, BLAS on 1 thread: "
            f"{profile['ms_per_iter']:.1f} ms/iter) spend their time; clip, AdamW and the Python between ops "
            "are outside ops:"
        )
        print(profile["table"])
        print("the FLOPs each op does a step (tools/flops.py), and at what rate in that one-thread step:")
        print(profile["flops_table"])
    if "memory" in result:
        memory = result["memory"]
        print("what its forward keeps for the backward (activations, each charged to the op that made it):")
        print(memory["table"])
        print(f"  and {memory['parameters_mb']:.2f} MB of parameters, not counted above")
        print(
            "  peak of one step (forward, backward, clip, AdamW) above what was in use before it: "
            f"{memory['step_peak_mb']:.2f} MB"
        )
    if as_json:
        print(json.dumps(result))
