"""Every CUDA source compiles, for every GPU architecture we claim, on any machine: NVRTC needs
no GPU and no driver, so a CUDA edit that breaks the build fails here, in CI, not weeks later on a
lent GPU. The source is assembled exactly as the loader does it (kernels.cuda.source_code)."""

import pathlib

import pytest

from tinygrad_gpt.kernels import cuda


def _nvrtc():
    """CuPy's NVRTC binding with a loadable libnvrtc, or None."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception:  # CuPy missing, or its NVRTC library not found
        return None
    return nvrtc


NVRTC = _nvrtc()
pytestmark = pytest.mark.skipif(
    NVRTC is None, reason="NVRTC is not installed (pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12)"
)
SOURCES = sorted(path.stem for path in pathlib.Path(cuda.__file__).parent.glob("*.cu"))
ARCHITECTURES = ["compute_80", "compute_90"]  # A100, H100/H200


def test_every_source_is_listed():
    assert {"layernorm", "softmax", "attention", "flash_attention"} <= set(SOURCES)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("name", SOURCES)
def test_compiles(name, arch):
    program = NVRTC.createProgram(cuda.source_code(name), f"{name}.cu", [], [])
    try:
        NVRTC.compileProgram(program, [*cuda.NVRTC_OPTIONS, f"--gpu-architecture={arch}"])
    except NVRTC.NVRTCError as error:
        pytest.fail(f"{name}.cu does not compile for {arch}: {error}\n{NVRTC.getProgramLog(program)}")
    assert NVRTC.getPTX(program)
    NVRTC.destroyProgram(program)


def test_a_broken_source_fails_to_compile():
    """The check can fail: NVRTC rejects code with an error in it."""
    program = NVRTC.createProgram(cuda.source_code("gelu") + "\nthis is not C++;\n", "gelu.cu", [], [])
    with pytest.raises(NVRTC.NVRTCError):
        NVRTC.compileProgram(program, [*cuda.NVRTC_OPTIONS, "--gpu-architecture=compute_90"])
