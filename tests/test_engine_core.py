"""The autograd machinery: accumulation, deep graphs, freeing, no_grad, dtypes, devices, backends."""

import importlib
import math
import re
import sys
import types
import weakref

import numpy as np
import pytest

import tinygrad_gpt.engine.functional as F
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor, gradcheck, no_grad
from tinygrad_gpt.engine.function import Function
from tinygrad_gpt.kernels import cpu, cuda, rungs

trace_module = importlib.import_module("tinygrad_gpt.engine.trace")  # `engine.trace` is the context manager


def leaf(values, dtype=np.float64):
    return Tensor(engine.backend.get_xp().asarray(values, dtype=dtype), requires_grad=True)


def host(array):
    return engine.backend.to_numpy(array)


# --- gradients accumulate ----------------------------------------------------------------------


def test_gradient_accumulates_across_uses_and_backward_calls(backend):
    x = leaf(3.0)
    (x * x + x).backward()  # d/dx (x^2 + x) = 2x + 1, x used three times
    assert x.grad.item() == 7.0
    (x * x + x).backward()  # a second graph: .grad adds up
    assert x.grad.item() == 14.0


def test_a_leafs_gradient_adds_into_its_own_array_in_place(backend):
    """No new array per contribution; and an array an op hands to two inputs (Add's gradient
    goes to both) is copied before it lands, so adding in place never changes another's."""
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    own = x.grad
    (x + x).sum().backward()
    assert x.grad is own
    np.testing.assert_array_equal(host(x.grad), [4.0, 4.0])
    (dx,) = engine.grad((x + leaf([0.0, 0.0])).sum() + (x * 3.0).sum(), [x])
    np.testing.assert_array_equal(host(dx.data), [4.0, 4.0])  # engine.grad collects the same way


def test_intermediate_used_twice_collects_both_gradients(backend):
    x = leaf([1.0, 2.0])
    h = x * 3.0
    (h * h + h).sum().backward()  # d/dx = (2h + 1) * 3
    np.testing.assert_array_equal(host(x.grad), [21.0, 39.0])


def test_chain_of_ten_thousand_ops_backprops(backend):
    x = leaf(0.5)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.backward()  # an iterative walk: no RecursionError
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-9)


# --- the graph is freed ------------------------------------------------------------------------


def test_graph_freed_after_backward(backend):
    x = leaf([1.0, 2.0])
    h = x * 2.0
    y = h.sum()
    y.backward()
    assert y._ctx is None and h._ctx is None
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_new_graph_on_a_freed_intermediate_raises_instead_of_losing_gradients(backend):
    x = leaf([1.0, 2.0])
    h = x * 3.0
    h.sum().backward()
    with pytest.raises(RuntimeError, match="earlier backward"):
        (h * 2.0).sum().backward()  # the gradient could not reach x: say so
    np.testing.assert_array_equal(host(x.grad), [3.0, 3.0])  # untouched by the failed call
    assert h.grad is None


def test_intermediates_and_nodes_die_after_backward(backend):
    x = leaf([1.0, 2.0])
    h = x.exp()
    node, intermediate = weakref.ref(h._ctx), weakref.ref(h)
    y = (h * 2.0).sum()
    del h
    assert intermediate() is not None and node() is not None  # the graph holds them until backward
    y.backward()
    assert intermediate() is None and node() is None  # freed by refcounting alone: no cycles


def test_a_node_still_held_releases_its_inputs(backend):
    x = leaf([1.0, 2.0])
    h = x.exp()
    out = h * 2.0
    node, intermediate = out._ctx, weakref.ref(h)  # as a debugger might keep a node around
    del h
    out.sum().backward()
    assert node.inputs == () and intermediate() is None


def test_backward_on_tensor_without_graph_raises(backend):
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


def test_backward_needs_gradient_for_non_scalar(backend):
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="single-element"):
        (x * 2.0).backward()
    (x * 2.0).backward(engine.backend.get_xp().asarray([1.0, 10.0]))
    np.testing.assert_array_equal(host(x.grad), [2.0, 20.0])


# --- what gets a gradient ----------------------------------------------------------------------


def test_no_grad_builds_no_graph(backend):
    x = leaf([1.0, 2.0])
    with no_grad():
        y = (x * x).sum()
        assert not engine.is_grad_enabled()
    assert engine.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    assert (x * x).sum().requires_grad


def test_only_leaves_that_require_grad_get_grad(backend):
    a, b = leaf([1.0, 2.0]), Tensor(engine.backend.get_xp().asarray([3.0, 4.0]))
    h = a * b
    h.sum().backward()
    np.testing.assert_array_equal(host(a.grad), [3.0, 4.0])
    assert b.grad is None and h.grad is None


def test_integer_tensors_cannot_require_grad(backend):
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(engine.backend.get_xp().arange(3), requires_grad=True)


def test_broadcast_gradient_is_reduced_to_input_shape(backend):
    a, b, c = leaf([[1.0], [2.0], [3.0]]), leaf([1.0, 10.0, 100.0, 1000.0]), leaf(2.0)
    (a * b * c).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_array_equal(host(a.grad), [[2222.0]] * 3)
    np.testing.assert_array_equal(host(b.grad), [12.0] * 4)
    assert c.grad.item() == 6 * 1111.0


# --- dtypes ------------------------------------------------------------------------------------


def test_default_dtypes(backend):
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([[1, 2]]).dtype.kind == "i"
    assert Tensor(np.zeros(2)).dtype == np.float64  # float64 arrays stay float64
    assert Tensor(np.zeros(2, dtype=np.float32)).dtype == np.float32


def _float32_cases():
    """name -> (fn over the inputs, input shapes); inputs are positive so log/sqrt/pow are defined."""
    idx, targets = np.array([[0, 2], [1, 1]]), np.array([0, 2, 1, 1])
    mask = np.triu(np.ones((3, 3), dtype=bool), k=1)
    xp = lambda a: engine.backend.get_xp().asarray(a)  # noqa: E731  (built on the active backend)
    return {
        "add": (lambda a, b: a + b, [(2, 3), (3,)]),
        "sub": (lambda a, b: a - b, [(2, 3), (2, 1)]),
        "mul": (lambda a, b: a * b, [(2, 3), (3,)]),
        "div": (lambda a, b: a / b, [(2, 3), (3,)]),
        "scalars": (lambda a: (2.5 + a - 1.5) * 3.0 / 2.0 - (1.0 / a) + (2.0 - a), [(3,)]),
        "numpy scalars": (lambda a: a * np.float64(2.0) + np.float64(1.0) - a / np.float64(3.0), [(3,)]),
        "pow scalar": (lambda a: a**2 + a**0.5 + a ** np.float64(1.5), [(3,)]),
        "rpow": (lambda a: 2.0**a, [(3,)]),
        "pow tensor": (lambda a, b: a**b, [(3,), (3,)]),
        "neg": (lambda a: -a, [(3,)]),
        "matmul": (lambda a, b: a @ b, [(2, 3, 4), (4, 2)]),
        "matvec": (lambda a, b: a @ b, [(3, 4), (4,)]),
        "sum": (lambda a: a.sum(axis=0) + a.sum(), [(2, 3)]),
        "mean": (lambda a: a.mean(axis=(0, 1), keepdims=True) + a.mean(), [(2, 3)]),
        "max": (lambda a: a.max(axis=-1) + a.max(), [(2, 3)]),
        "exp log sqrt tanh": (lambda a: a.exp() + a.log() + a.sqrt() + a.tanh(), [(3,)]),
        "relu gelu": (lambda a: a.relu() + a.gelu() + F.gelu(a), [(3,)]),
        "shapes": (lambda a: a.reshape(3, 2).T.transpose(0, 1).permute(1, 0).contiguous(), [(2, 3)]),
        "getitem": (lambda a: a[1] + a[:, 0:1][..., None].sum() + a[xp([0, 0, 1])].sum(), [(2, 3)]),
        "masked_fill": (lambda a: a.masked_fill(xp(mask), -math.inf).softmax(axis=-1), [(3, 3)]),
        "softmax": (lambda a: a.softmax(axis=0) + F.log_softmax(a, axis=-1), [(2, 3)]),
        "concat stack split": (
            lambda a, b: F.stack([F.concat([a, b])] * 2) + F.concat(a.split(1), axis=-1),
            [(1, 3), (1, 3)],
        ),
        "linear": (lambda x, w, b: F.linear(x, w, b) + F.linear(x, w), [(2, 3, 4), (4, 5), (5,)]),
        "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b) + F.layer_norm(x, None, None), [(2, 4), (4,), (4,)]),
        "cross_entropy": (lambda x: F.cross_entropy(x, xp(targets)), [(2, 2, 3)]),
        "embedding": (lambda w: F.embedding(xp(idx), w), [(3, 4)]),
        "dropout": (lambda a: F.dropout(a, 0.5), [(4, 4)]),
        "attention": (
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.2),
            [(1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 3, 4)],
        ),
    }


@pytest.mark.parametrize("name", list(_float32_cases()))
def test_no_op_upcasts_float32(backend, name, monkeypatch):
    """Output, leaf gradients and every gradient passed between nodes stay float32."""
    fn, input_shapes = _float32_cases()[name]
    rng = np.random.default_rng(0)
    inputs = [leaf(rng.uniform(0.5, 2.0, size=shape), dtype=np.float32) for shape in input_shapes]
    seen = []  # (node, gradient) for every gradient that arrives at or leaves a node

    def record(node, out_grads, grads):
        seen.extend((node, x) for x in (*out_grads, *grads))

    monkeypatch.setattr(trace_module, "report", record)
    with engine.trace():
        out = fn(*inputs)
        assert out.dtype == np.float32
        out.backward(engine.backend.get_xp().ones(out.shape, dtype=np.float32))
    assert seen
    assert [(node, g.dtype) for node, g in seen if g is not None and g.dtype != np.float32] == []
    assert [x.grad.dtype for x in inputs] == [np.float32] * len(inputs)


# --- Tensor methods ----------------------------------------------------------------------------


def test_numpy_returns_a_copy(backend):
    x = Tensor([1.0, 2.0])
    a = x.numpy()
    assert isinstance(a, np.ndarray)
    a[0] = 100.0
    assert x.numpy()[0] == 1.0


def test_item_detach_shape_dtype_device(backend):
    x = leaf([[1.0, 2.0, 3.0]])
    assert (x.shape, x.dtype, x.ndim) == ((1, 3), np.float64, 2)
    assert x.device == ("cuda" if backend == "cupy" else "cpu")
    assert x.sum().item() == 6.0 and isinstance(x.sum().item(), float)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d._ctx is None
    np.testing.assert_array_equal(d.numpy(), [[2.0, 4.0, 6.0]])


def test_to_cpu(backend):
    x = leaf([1.0, 2.0])
    y = x.to("cpu")
    assert y.device == "cpu" and y.requires_grad and isinstance(y.data, np.ndarray)
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0])
    assert x.to(x.device) is x


def test_zero_grad(backend):
    x = leaf([1.0, 2.0])
    x.sum().backward()
    assert x.grad is not None
    x.zero_grad()
    assert x.grad is None


def test_mixing_devices_raises_a_clear_error(backend):
    if backend != "cupy":
        pytest.skip("needs two devices: runs on the cupy backend")
    gpu = leaf([1.0, 2.0])
    cpu = gpu.to("cpu")
    with pytest.raises(RuntimeError, match="different devices"):
        gpu + cpu


# --- backends ----------------------------------------------------------------------------------


def test_set_backend_cupy_without_cupy_explains_how_to_install(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now fails, GPU or not
    with pytest.raises(engine.BackendError) as error:
        engine.set_backend("cupy")
    message = str(error.value)
    assert 'pip install -e ".[gpu]"' in message and "\n" not in message
    assert engine.backend.name() == backend  # a failed switch leaves the backend as it was


def test_set_backend_cupy_without_gpu(backend, monkeypatch):
    no_gpu = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 0)))
    monkeypatch.setitem(sys.modules, "cupy", no_gpu)
    with pytest.raises(engine.BackendError, match="no CUDA GPU is visible"):
        engine.set_backend("cupy")


def test_unknown_backend_name():
    with pytest.raises(engine.BackendError, match="unknown backend 'tpu'"):
        engine.set_backend("tpu")


def test_tinygpt_backend_env_is_read_on_first_use(monkeypatch):
    monkeypatch.setattr(engine.backend, "_active", None)  # as in a fresh process
    monkeypatch.setenv("TINYGPT_BACKEND", "numpy")
    assert engine.backend.name() == "numpy" and engine.backend.get_xp() is np
    monkeypatch.setattr(engine.backend, "_active", None)
    monkeypatch.setenv("TINYGPT_BACKEND", "tpu")
    with pytest.raises(engine.BackendError, match="unknown backend 'tpu'"):
        Tensor([1.0])


def test_trace_prints_one_block_per_node(backend, capsys):
    x = leaf([1.0, -2.0])
    y = (x.exp() * 2.0).sum()
    with engine.trace():
        y.backward()
    lines = capsys.readouterr().out.splitlines()
    blocks = [line.split()[0] for line in lines if not line.startswith(" ")]
    assert blocks == ["Sum", "Mul", "Exp"]
    assert sum("-> input 0" in line for line in lines) == 3


def test_kernels_default_to_auto_the_compiled_rung_of_each_device(backend, monkeypatch):
    monkeypatch.delenv("TINYGPT_KERNELS", raising=False)
    monkeypatch.setattr(engine.dispatch, "_chosen", None)  # as in a fresh process
    assert engine.dispatch.chosen() == "auto"
    want = rungs.CUDA if backend == "cupy" else rungs.CPU if cpu.AVAILABLE else rungs.FAST
    assert engine.dispatch.kernels_for(engine.backend.get_xp().zeros(2)) is want


def test_auto_runs_the_fast_kernels_on_host_arrays_without_numba(monkeypatch):
    monkeypatch.setattr(engine.dispatch, "_chosen", "auto")
    monkeypatch.setattr(cpu, "AVAILABLE", False)
    assert engine.dispatch.kernels_for(np.zeros(2)) is rungs.FAST


@pytest.mark.parametrize("name", ["plain", "fast"])
def test_tinygpt_kernels_picks_a_rung_for_every_array(backend, monkeypatch, name):
    monkeypatch.setenv("TINYGPT_KERNELS", name)
    monkeypatch.setattr(engine.dispatch, "_chosen", None)
    assert engine.dispatch.kernels_for(engine.backend.get_xp().zeros(2)) is rungs.RUNGS[name]


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_a_compiled_rung_runs_on_its_device_and_fast_on_the_other(backend, monkeypatch, name):
    monkeypatch.setattr(engine.dispatch, "_chosen", name)
    own = (name == "cuda") == (backend == "cupy")
    want = rungs.RUNGS[name] if own else rungs.FAST
    assert engine.dispatch.kernels_for(engine.backend.get_xp().zeros(2)) is want


def test_the_cuda_rung_runs_the_cuda_kernels_on_gpu_arrays(backend, monkeypatch):
    if backend != "cupy":
        pytest.skip("the CUDA kernels exist for cupy arrays only")
    monkeypatch.setattr(engine.dispatch, "_chosen", "cuda")
    assert engine.dispatch.kernels_for(engine.backend.get_xp().zeros(2)).layernorm_forward is cuda.layernorm_forward


def test_unknown_kernels_are_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(engine.dispatch, "_chosen", None)
    with pytest.raises(engine.BackendError, match="unknown kernels 'xp'.*auto, plain, fast, cpu, cuda"):
        engine.set_kernels("xp")


def test_the_cpu_rung_without_numba_is_refused_saying_why(monkeypatch):
    monkeypatch.setattr(engine.dispatch, "_chosen", None)
    monkeypatch.setattr(cpu, "AVAILABLE", False)
    monkeypatch.setattr(cpu, "MISSING", "the cpu kernels need Numba: No module named 'numba' (pip install numba)")
    with pytest.raises(engine.BackendError, match="need Numba"):
        engine.set_kernels("cpu")


# --- gradcheck can fail ------------------------------------------------------------------------


class WrongIdentity(Function):
    """y = x, with a backward that is off by a factor of 2."""

    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return 2 * g


def test_gradcheck_catches_a_wrong_backward(backend):
    x, y = leaf([1.0, 2.0]), leaf([[3.0, 4.0], [5.0, 6.0]])
    assert gradcheck(lambda a, b: a * b, x, y)
    with pytest.raises(AssertionError) as error:
        gradcheck(lambda a, b: (a + WrongIdentity.apply(b)).sum(axis=0), x, y)
    found = re.fullmatch(
        r"gradcheck: input 1 \(shape \(2, 2\)\), element \(0, 0\): numeric (\S+) vs analytic (\S+)", str(error.value)
    )
    assert found, str(error.value)
    numeric, analytic = map(float, found.groups())
    assert analytic == pytest.approx(2 * numeric, rel=1e-6)


def test_gradcheck_rejects_float32_and_inputs_without_grad(backend):
    with pytest.raises(ValueError, match="float64"):
        gradcheck(lambda a: a * 2.0, leaf([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="no input requires grad"):
        gradcheck(lambda a: a * 2.0, Tensor(np.ones(2)))


def test_gradcheck_leaves_the_users_gradients_alone(backend):
    x = leaf([1.0, 2.0])
    (x * 2.0).sum().backward()
    assert gradcheck(lambda t: t * t, x)
    np.testing.assert_array_equal(host(x.grad), [2.0, 2.0])


def test_a_float_list_operand_stays_float32(backend):
    x = Tensor(engine.backend.get_xp().ones(3, dtype=np.float32), requires_grad=True)
    y = x + [1.0, 2.0, 3.0]
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_split_defaults_to_the_first_axis_like_pytorch(backend):
    pieces = Tensor(engine.backend.get_xp().zeros((5, 2), dtype=np.float32)).split(2)
    assert [p.shape for p in pieces] == [(2, 2), (2, 2), (1, 2)]


def test_split_is_one_node_whose_backward_runs_once_with_every_piece(backend, monkeypatch):
    x = leaf(np.arange(6.0).reshape(2, 3))
    q, k, v = x.split(1, axis=1)
    calls = []
    monkeypatch.setattr(trace_module, "report", lambda node, out_grads, _: calls.append((repr(node), len(out_grads))))
    with engine.trace():
        (q * 1.0 + k * 2.0 + v * 3.0).sum().backward()
    assert calls.count(("Split", 3)) == 1
    np.testing.assert_array_equal(host(x.grad), [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


def test_a_piece_no_gradient_reaches_gets_zeros(backend):
    x = leaf(np.arange(6.0).reshape(3, 2))
    first, _, last = x.split(1)  # the middle piece is never used
    (first * 2.0 + last).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])


def test_pieces_of_a_leaf_split_can_each_take_their_own_backward(backend):
    x = leaf(np.arange(4.0).reshape(2, 2))
    first, second = x.split(1)
    (first * 2.0).sum().backward()
    (second * 3.0).sum().backward()  # the Split node must still lead to x
    np.testing.assert_array_equal(host(x.grad), [[2.0, 2.0], [3.0, 3.0]])


def test_a_second_backward_through_a_split_of_a_freed_intermediate_raises(backend):
    x = leaf(np.arange(4.0).reshape(2, 2))
    first, second = (x * 1.0).split(1)
    (first * 2.0).sum().backward()  # walks and frees x * 1.0
    with pytest.raises(RuntimeError, match="freed"):
        (second * 3.0).sum().backward()


def test_leaves_never_share_a_gradient_buffer(backend):
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x + y).sum().backward()  # Add hands the very same array to both inputs
    assert x.grad is not y.grad
    (x * 5.0 + y).sum().backward()  # accumulating into x.grad must leave y.grad alone
    np.testing.assert_array_equal(host(x.grad), [6.0, 6.0])
    np.testing.assert_array_equal(host(y.grad), [2.0, 2.0])


def test_a_fresh_gradient_is_kept_without_a_copy(backend, monkeypatch):
    w = leaf([[1.0, 2.0], [3.0, 4.0]])
    x = Tensor(engine.backend.get_xp().ones((3, 2)))
    returned = []
    real = engine.ops_nn.Linear.backward
    monkeypatch.setattr(
        engine.ops_nn.Linear, "backward", lambda self, g: returned.append(real(self, g)) or returned[-1]
    )
    F.linear(x, w).sum().backward()
    assert w.grad is returned[0][1]  # the kernel's dW became .grad as it is
