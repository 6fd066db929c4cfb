"""A CuPy stand-in for the tests, on machines where real CuPy has no usable GPU (tests/conftest.py
puts it first on the path only then, and only for the test run and its subprocesses).

Arrays live in host memory, but they behave like device arrays and are as strict as CuPy's:
- `ndarray` is not a NumPy array: `numpy.asarray(a)` raises TypeError, as CuPy refuses implicit
  host conversion; `a.get()` and `asnumpy(a)` are the explicit ways;
- NumPy functions and ufuncs called on them dispatch to what real CuPy has (names.txt) and
  nothing else, and a host numpy array mixed in as an operand raises TypeError, as CuPy does;
- every device-to-host sync (`.get()`, `asnumpy`, `float()`, `int()`, `bool()`, `.item()`,
  `.tolist()`, printing) is counted per call site in `SYNCS`;
- `RawModule` kernels are launched through `kernels.py`: each launch is checked against the
  kernel's `extern "C"` signature in the .cu source (argument count, types and widths, dtypes,
  contiguity, grid and block limits, shared memory) and computed by the NumPy reference.
"""

import builtins
import collections
import os
import sys
import weakref

import numpy
from numpy.lib.mixins import NDArrayOperatorsMixin

__version__ = "14.0.0+tests.stand.in"
IS_STAND_IN = True  # real CuPy has no such name: tests that need to know ask for it

_HERE = os.path.dirname(os.path.abspath(__file__))
SYNCS = collections.Counter()  # "file:line (function)" -> device-to-host syncs made there


def _call_site():
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_HERE):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})" if frame else "?"


def _sync():
    SYNCS[_call_site()] += 1


# --- arrays -------------------------------------------------------------------------------------

_OWNERS = weakref.WeakValueDictionary()  # id(numpy buffer owner) -> its stand-in array
_POINTERS = weakref.WeakValueDictionary()  # data.ptr -> array, for kernels handed raw addresses


class _Memory:
    def __init__(self, array):
        self.ptr = array._a.__array_interface__["data"][0] if array._a.size else 0
        _POINTERS[self.ptr] = array


def _host_operand(x, where):
    raise TypeError(f"Unsupported type {type(x)} ({where}): a host numpy array is not a cupy operand")


def _unwrap(x, host_ok=False, where="argument"):
    """x with every stand-in array replaced by its NumPy storage; a host array raises unless host_ok."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, numpy.ndarray):
        if not host_ok:
            _host_operand(x, where)
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(e, host_ok, where) for e in x)
    return x


def _wrap(x):
    if isinstance(x, numpy.ndarray):
        return ndarray._of(x)
    if isinstance(x, numpy.generic):  # CuPy's reductions give 0-d arrays, never host scalars
        return ndarray._of(numpy.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(e) for e in x)
    if isinstance(x, list):
        return [_wrap(e) for e in x]
    return x


_METHODS = set(
    "all any argmax argmin argsort astype clip conj copy cumprod cumsum diagonal dot fill flatten max mean min "
    "nonzero prod ravel repeat reshape round sort squeeze std sum swapaxes take trace transpose var view".split()
)


class ndarray(NDArrayOperatorsMixin):
    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, order="C"):
        self._a = numpy.empty(shape, dtype=dtype, order=order)

    @classmethod
    def _of(cls, a):
        out = cls.__new__(cls)
        out._a = a
        if a.base is None and id(a) not in _OWNERS:
            _OWNERS[id(a)] = out
            cuda._pool._allocated(a)
        return out

    @property
    def base(self):
        """The array owning this view's memory (one object per buffer while it lives), or None."""
        root = self._a
        while isinstance(root.base, numpy.ndarray):
            root = root.base
        if root is self._a:
            return None
        owner = _OWNERS.get(id(root))
        return owner if owner is not None and owner._a is root else ndarray._of(root)

    # what CuPy refuses: implicit conversion to a host array
    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fake = _UFUNCS.get(ufunc.__name__)
        if fake is None or method not in ("__call__", "at", "reduce", "accumulate", "outer"):
            return NotImplemented
        return getattr(fake, "__call__" if method == "__call__" else method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        module = sys.modules[__name__]
        if func.__module__ == "numpy.linalg":
            module = linalg
        elif func.__module__ != "numpy":
            return NotImplemented
        fake = getattr(module, func.__name__, None)
        return NotImplemented if fake is None else fake(*args, **kwargs)

    # attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    ndim = property(lambda self: self._a.ndim)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))
    data = property(lambda self: _Memory(self))
    device = property(lambda self: cuda.Device())

    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            if "out" in kwargs:
                kwargs["out"] = _unwrap(kwargs["out"])
            result = method(*_unwrap(args), **kwargs)
            return self if result is self._a else _wrap(result)  # astype(copy=False) and the like

        return call

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, host_ok=True)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, host_ok=True)] = _unwrap(value, host_ok=True)

    # device-to-host syncs, each counted where it is made
    def get(self, stream=None, order="C", out=None):
        _sync()
        return self._a.copy()

    def set(self, arr, stream=None):
        self._a[...] = arr

    def item(self):
        _sync()
        return self._a.item()

    def tolist(self):
        _sync()
        return self._a.tolist()

    def _scalar(self, kind):
        _sync()
        if self._a.size != 1:
            raise TypeError("only length-1 arrays can be converted to Python scalars")
        return kind(self._a.reshape(())[()])

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __complex__(self):
        return self._scalar(complex)

    def __bool__(self):
        if self._a.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous.")
        return self._scalar(builtins.bool)

    def __repr__(self):
        _sync()
        return repr(self._a)

    def __str__(self):
        _sync()
        return str(self._a)

    def __format__(self, spec):
        _sync()
        return format(self._a.reshape(())[()] if self._a.ndim == 0 else self._a, spec)

    def __reduce__(self):  # pickling copies to the host, as CuPy's does
        _sync()
        return (_unpickle, (self._a.copy(),))


def _unpickle(a):
    return ndarray._of(a)


# --- functions ----------------------------------------------------------------------------------


def _names(section):
    lines = open(os.path.join(_HERE, "names.txt")).read().split("\n")
    return lines[lines.index(f"# {section}") + 1].split()


class _Ufunc:
    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__
        self.nin, self.nout = ufunc.nin, ufunc.nout

    def _run(self, method, inputs, kwargs):
        out = kwargs.get("out")
        if out is not None:
            out = out if isinstance(out, tuple) else (out,)
            kwargs["out"] = _unwrap(out, where="out")
        result = method(*_unwrap(inputs, where=self.__name__), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __call__(self, *inputs, **kwargs):
        return self._run(self._ufunc, inputs, kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            _host_operand(a, f"{self.__name__}.at")
        args = (indices,) if b is None else (indices, _unwrap(b, where=f"{self.__name__}.at"))
        self._ufunc.at(a._a, *_unwrap(args, host_ok=True))

    def reduce(self, *inputs, **kwargs):
        return self._run(self._ufunc.reduce, inputs, kwargs)

    def accumulate(self, *inputs, **kwargs):
        return self._run(self._ufunc.accumulate, inputs, kwargs)

    def outer(self, *inputs, **kwargs):
        return self._run(self._ufunc.outer, inputs, kwargs)


_UFUNCS = {name: _Ufunc(getattr(numpy, name)) for name in _names("ufuncs")}
globals().update(_UFUNCS)

# host data (lists, scalars, numpy arrays) becomes device data through these: a host-to-device copy
_FROM_HOST = {"array", "asarray", "asanyarray", "frombuffer", "fromiter", "fromfunction", "fromstring"}
_PLAIN_RESULTS = {"ndim", "size", "shape", "result_type", "can_cast", "isscalar", "iscomplexobj", "isrealobj"}
_PLAIN_RESULTS |= {"issubdtype", "promote_types", "min_scalar_type", "common_type", "isdtype", "may_share_memory"}
_PLAIN_RESULTS |= {"shares_memory", "broadcast_shapes", "iterable", "typename", "mintypecode", "base_repr"}
_PLAIN_RESULTS |= {"binary_repr", "format_float_positional", "format_float_scientific", "isfortran"}


def _function(name, numpy_function):
    host_ok = name in _FROM_HOST

    def function(*args, **kwargs):
        if "out" in kwargs and kwargs["out"] is not None:
            out = kwargs["out"]
            kwargs["out"] = _unwrap(out, where="out")
            numpy_function(*_unwrap(args, host_ok, name), **_unwrap(kwargs, host_ok, name))
            return out
        kwargs = {k: _unwrap(v, host_ok, name) for k, v in kwargs.items()}
        result = numpy_function(*_unwrap(args, host_ok, name), **kwargs)
        if name in _PLAIN_RESULTS:
            return result
        if isinstance(result, numpy.ndarray) and host_ok and any(arg is result for arg in args):
            result = result.copy()  # numpy.asarray returns its argument; CuPy copies to the device
        return _wrap(result)

    function.__name__ = name
    return function


for _name in _names("functions"):
    if _name not in globals():
        globals()[_name] = _function(_name, getattr(numpy, _name))


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    a = obj._a if isinstance(obj, ndarray) else obj
    return ndarray._of(numpy.array(a, dtype=dtype, order=order, ndmin=ndmin, copy=True))


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return ndarray._of(numpy.array(a, dtype=dtype, order=order or "K", copy=True))


def ascontiguousarray(a, dtype=None):
    """Like CuPy's (and NumPy's before 2.x documented otherwise): a 0-d array comes back 1-d."""
    if isinstance(a, numpy.ndarray):
        _host_operand(a, "ascontiguousarray")
    a = asarray(a)
    out = numpy.ascontiguousarray(a._a, dtype=dtype)
    if out.ndim == 0:
        out = out.reshape(1)
    return a if out is a._a else ndarray._of(out)


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        _sync()
        return a._a.copy()
    return numpy.asarray(a)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else numpy


# dtypes and constants are NumPy's own objects in CuPy too
for _name in (
    "bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 complex64 complex128 "
    "intp uintp dtype finfo iinfo generic number integer floating signedinteger unsignedinteger inexact "
    "nan inf pi e newaxis euler_gamma ndindex"
).split():
    globals()[_name] = getattr(numpy, _name)
bool = numpy.bool_  # noqa: A001  (cupy.bool is NumPy's bool too)
int_, float_ = numpy.int_, numpy.float64


class _Linalg:
    LinAlgError = numpy.linalg.LinAlgError


linalg = _Linalg()
for _name in _names("linalg"):
    if _name != "LinAlgError":
        setattr(linalg, _name, _function(_name, getattr(numpy.linalg, _name)))


# --- random -------------------------------------------------------------------------------------


class _Generator:
    """cupy.random.Generator's draws, from NumPy's generator (another stream of numbers)."""

    def __init__(self, seed=None):
        self._rng = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        if name not in ("random", "standard_normal", "normal", "integers", "uniform", "exponential", "permutation"):
            raise AttributeError(name)
        draw = getattr(self._rng, name)
        return lambda *args, **kwargs: _wrap(numpy.asarray(draw(*_unwrap(args), **kwargs)))


class _Random:
    Generator = _Generator

    @staticmethod
    def default_rng(seed=None):
        return _Generator(seed)


random = _Random()

from cupy import cuda  # noqa: E402  (needs ndarray above)
from cupy.cuda import get_default_memory_pool, get_default_pinned_memory_pool  # noqa: E402,F401
from cupy.kernels import RawKernel, RawModule  # noqa: E402,F401

del _name
