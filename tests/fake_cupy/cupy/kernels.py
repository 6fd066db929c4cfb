"""RawModule and RawKernel for the stand-in: launches checked against the .cu signatures, results
computed by the NumPy reference of each kernel (references.py)."""

import re

import numpy

_MAX_THREADS, _MAX_BLOCK = 1024, (1024, 1024, 64)
_MAX_GRID = (2**31 - 1, 65535, 65535)
_MAX_SHARED = 48 * 1024  # without opting in (cudaFuncSetAttribute), which our kernels do not
_CTYPES = {
    "float": numpy.float32,
    "double": numpy.float64,
    "long long": numpy.int64,
    "unsigned long long": numpy.uint64,
    "int": numpy.int32,
    "unsigned int": numpy.uint32,
    "bool": numpy.bool_,
}
_TOKEN = re.compile(r'"[^"]*"|\w+|##|\S')


class LaunchError(ValueError):
    """A launch real CUDA would refuse, or run out of bounds."""


# --- the signatures: a small C preprocessor (object- and function-like #defines, ##) ----------


def _macros(code):
    macros = {}
    for line in code.split("\n"):
        m = re.match(r"\s*#\s*define\s+(\w+)(\(([^)]*)\))?\s*(.*)", line)
        if m:
            params = None if m.group(2) is None else [p.strip() for p in m.group(3).split(",") if p.strip()]
            macros[m.group(1)] = (params, _TOKEN.findall(m.group(4)))
    return macros


def _call_args(tokens, i):
    """The comma-separated arguments of the call whose '(' is tokens[i], and the index after ')'."""
    depth, args = 0, [[]]
    for j in range(i + 1, len(tokens)):
        t = tokens[j]
        if t == ")" and depth == 0:
            return args, j + 1
        depth += (t == "(") - (t == ")")
        if t == "," and depth == 0:
            args.append([])
        else:
            args[-1].append(t)
    raise LaunchError("unbalanced parentheses in a macro call")


def _expand(tokens, macros, hidden=frozenset()):
    out, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t not in macros or t in hidden:
            out.append(t)
            i += 1
            continue
        params, body = macros[t]
        if params is None:
            out += _expand(body, macros, hidden | {t})
            i += 1
            continue
        if i + 1 >= len(tokens) or tokens[i + 1] != "(":
            out.append(t)
            i += 1
            continue
        args, i = _call_args(tokens, i + 1)
        pasted = []
        for b in body:
            piece = args[params.index(b)] if b in params else [b]
            if pasted and pasted[-1] == "##":
                pasted.pop()
                pasted[-1] += piece[0]
                pasted += piece[1:]
            else:
                pasted += piece
        out += _expand(pasted, macros, hidden | {t})
    return out


def signatures(code):
    """{entry point: (launch bound or None, [(name, ctype, is_pointer)])} of `code`'s extern "C"
    __global__ functions, after preprocessing."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", " ", code.replace("\\\n", " "), flags=re.S)
    macros = _macros(code)
    text = "\n".join(line for line in code.split("\n") if not line.lstrip().startswith("#"))
    tokens = _expand(_TOKEN.findall(text), macros)
    found = {}
    for i in range(len(tokens) - 3):
        if tokens[i : i + 4] != ["extern", '"C"', "__global__", "void"]:
            continue
        j, bound = i + 4, None
        if tokens[j] == "__launch_bounds__":
            args, j = _call_args(tokens, j + 1)
            bound = int(eval(" ".join(args[0])))  # a constant expression after expansion
        name = tokens[j]
        args, _ = _call_args(tokens, j + 1)
        params = []
        for a in args:
            ctype = " ".join(t for t in a[:-1] if t not in ("const", "*", "__restrict__"))
            if ctype not in _CTYPES:
                raise LaunchError(f"{name}: parameter type {ctype!r} unknown to the stand-in")
            params.append((a[-1], ctype, "*" in a))
        found[name] = (bound, params)
    return found


# --- modules and launches -----------------------------------------------------------------------


class RawModule:
    def __init__(self, code=None, path=None, options=(), backend="nvrtc", name_expressions=None, **kwargs):
        if code is None:
            code = open(path).read()
        self.code, self.options = code, tuple(options)
        self._signatures = signatures(code)

    def get_function(self, name):
        if name not in self._signatures:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name})")
        return RawKernel(None, name, signature=self._signatures[name])


class RawKernel:
    LAUNCHES = []  # (kernel name, grid, block) of every launch, for tests that count them

    def __init__(self, code, name, options=(), signature=None, **kwargs):
        self.name = name
        self.bound, self.params = signature if signature is not None else signatures(code)[name]

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid, block = _dims(grid, "grid", _MAX_GRID), _dims(block, "block", _MAX_BLOCK)
        threads = block[0] * block[1] * block[2]
        if threads > min(_MAX_THREADS, self.bound or _MAX_THREADS):
            raise LaunchError(f"{self.name}: {threads} threads per block, over the limit (launch bound {self.bound})")
        if not 0 <= int(shared_mem) <= _MAX_SHARED:
            raise LaunchError(f"{self.name}: {shared_mem} bytes of dynamic shared memory (at most {_MAX_SHARED})")
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, not {type(args).__name__}")
        if len(args) != len(self.params):
            raise LaunchError(f"{self.name} takes {len(self.params)} arguments, {len(args)} given")
        values = {p[0]: _argument(self.name, *p, a) for p, a in zip(self.params, args)}
        from cupy import references

        RawKernel.LAUNCHES.append((self.name, grid, block))
        references.run(self.name, references.Launch(grid, block, int(shared_mem), values))


def _dims(dims, what, limits):
    dims = tuple(dims) if isinstance(dims, tuple) else (dims,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, numpy.integer)) for d in dims):
        raise LaunchError(f"{what} {dims!r}: one to three integers")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(d < 1 or d > lim for d, lim in zip(dims, limits)):
        raise LaunchError(f"{what} {dims}: each dimension in 1..{limits} (cudaErrorInvalidConfiguration)")
    return dims


def _argument(kernel, name, ctype, pointer, a):
    from cupy import ndarray

    want = numpy.dtype(_CTYPES[ctype])
    if pointer:
        if isinstance(a, numpy.uint64) and a == 0:
            return None  # a null pointer
        if not isinstance(a, ndarray):
            raise LaunchError(f"{kernel}({name}): a {ctype}* takes a cupy array, got {type(a).__name__}")
        if a.dtype != want:
            raise LaunchError(f"{kernel}({name}): a {ctype}* takes {want}, got {a.dtype}")
        return a
    if isinstance(a, numpy.ndarray) or not isinstance(a, numpy.generic):
        raise LaunchError(f"{kernel}({name}): a {ctype} takes a numpy scalar of {want}, got {type(a).__name__}")
    if a.dtype != want:
        raise LaunchError(f"{kernel}({name}): a {ctype} takes {want}, got {a.dtype} (the kernel would misread it)")
    return a
