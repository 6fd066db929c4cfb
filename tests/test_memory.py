"""engine.memory: the bytes a graph keeps for its backward, on graphs small enough to count by hand,
and the peak memory of a call."""

import tracemalloc
from typing import NamedTuple

import numpy
import pytest

import tinygrad_gpt.engine.functional as F
from helpers import normal
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor
from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.engine.function import Function
from tinygrad_gpt.engine.memory import peak_bytes, saved_for_backward

N, C = 6, 5  # rows and features of the small graphs below
NC_BYTES = N * C * 8  # bytes of one (N, C) float64 array


def parameter(*shape, seed=0):
    return Tensor(normal(*shape, seed=seed), requires_grad=True)


def test_layer_norm_keeps_its_input_and_a_mean_and_rstd_per_row(backend, rung):
    p, weight, bias = parameter(N, C), parameter(C, seed=1), parameter(C, seed=2)
    x = p.exp()  # an activation: Exp made it and keeps it as its output
    kept = saved_for_backward(F.layer_norm(x, weight, bias))  # the root's own output is kept by no one
    assert kept.by_op == {"Exp": NC_BYTES, "LayerNorm": 2 * N * 8}  # (N, 1) mean and rstd
    assert kept.total == NC_BYTES + 2 * N * 8


def test_parameters_and_views_of_them_are_counted_apart_from_activations(backend):
    p, weight = parameter(N, C), parameter(3, C, seed=1)
    kept = saved_for_backward(F.linear(p.exp(), weight.T))  # Linear keeps a transposed view of weight
    assert kept.by_op == {"Exp": NC_BYTES}
    assert kept.parameters == NC_BYTES + 3 * C * 8


def test_a_view_costs_nothing_and_its_buffer_is_charged_to_the_op_that_made_it(backend):
    x = parameter(N, C).exp()
    view = x.reshape(C, N).T  # Reshape and Permute: views of Exp's output
    kept = saved_for_backward(view * view)  # Mul keeps the view, twice
    assert kept.by_op == {"Exp": NC_BYTES}


def test_a_buffer_kept_by_two_nodes_counts_once(backend):
    x = parameter(N, C).exp()
    kept = saved_for_backward(x.tanh() + x.sqrt())  # both keep x; each keeps its output; Add keeps both
    assert kept.by_op == {"Exp": NC_BYTES, "Tanh": NC_BYTES, "Sqrt": NC_BYTES}


class Pair(NamedTuple):
    doubled: object
    tripled: object
    is_exact: bool


class KeepsAPair(Function):
    """An op that keeps a NamedTuple of its own arrays, and things that hold no buffer."""

    def forward(self, a):
        self.kernels = kernels_for(a)  # a dataclass of functions, not an array
        self.saved = Pair(a * 2, a * 3, True)
        self.shape = a.shape
        return a + 1


def test_arrays_an_op_keeps_on_itself_are_charged_to_it(backend):
    kept = saved_for_backward(KeepsAPair.apply(parameter(N, C)))
    assert kept.by_op == {"KeepsAPair": 2 * NC_BYTES}


def test_nothing_is_kept_by_a_leaf_or_after_backward(backend):
    p = parameter(N, C)
    assert saved_for_backward(p).total == 0
    loss = (p.exp() * p).sum()
    assert saved_for_backward(loss).total > 0
    loss.backward()  # the walk frees the graph as it goes
    assert saved_for_backward(loss).by_op == {}


def test_the_table_lists_ops_largest_first_then_the_total(backend):
    x = parameter(N, C).exp()
    table = saved_for_backward(x.tanh() * x.tanh().tanh()).table().splitlines()
    ops = [line.split()[0] for line in table[1:]]
    assert ops == ["Tanh", "Exp", "total"]  # Tanh made three buffers, Exp one


def test_peak_bytes_is_the_most_a_call_holds_at_once(backend):
    xp = engine.backend.get_xp()

    def two_arrays_at_once():
        a = xp.ones(10**6)  # 8 MB
        return float((a + 1).sum())  # a temporary of 8 MB beside it

    peak = peak_bytes(two_arrays_at_once)
    assert 16e6 <= peak < 16e6 + 1e5
    assert not tracemalloc.is_tracing()  # left as it was found


def test_peak_bytes_under_a_running_tracemalloc_starts_from_now_and_leaves_it_running(backend):
    if backend == "cupy":
        pytest.skip("tracemalloc sees host memory only")
    tracemalloc.start()
    try:
        big = numpy.ones(10**7)  # an 80 MB peak before the call
        del big
        assert peak_bytes(lambda: numpy.ones(10**6)) < 8e6 + 1e5
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
