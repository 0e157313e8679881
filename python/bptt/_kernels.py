"""Kernel-variant selection and loading: the bottom floor of the package.

Which build of the compiled kernels this process runs (baseline, AVX2 or
AVX-512; :func:`compiled_variant`) and how a kernel module of a backend is
imported (:func:`load_kernels`, :func:`compiled_helpers`). It imports no
other module of bptt at import time, so every floor above may import it; the
kernel modules it loads (``bptt._<name>``, ``bptt.reference.<name>``) are
imported by name when first asked for.
"""

import functools
import importlib
import os

_KERNEL_MODULES = {"numpy": "bptt.reference.{}", "cython": "bptt._{}"}


SIMD_VARIANTS = ("baseline", "avx2", "avx512")


@functools.lru_cache(maxsize=None)
def compiled_variant():
    """Which build of the compiled kernels this process uses.

    The widest build that exists and that the CPU runs: "avx512" (AVX-512
    F/VL/DQ/BW, 16 floats per instruction), "avx2" (AVX2 + FMA, 8 floats),
    else "baseline" (SSE2, any x86-64). The environment variable
    ``BPTT_SIMD`` (``baseline``, ``avx2`` or ``avx512``, read once) caps the
    choice, e.g. ``BPTT_SIMD=avx2`` on an AVX-512 machine.
    """
    cap = os.environ.get("BPTT_SIMD", "").strip().lower() or SIMD_VARIANTS[-1]
    if cap not in SIMD_VARIANTS:
        raise ValueError(
            f"BPTT_SIMD must be one of {', '.join(SIMD_VARIANTS)} (or unset); "
            f"got {os.environ['BPTT_SIMD']!r}."
        )
    try:
        _vmath = importlib.import_module("bptt._vmath")
    except ImportError:
        return "baseline"
    allowed = SIMD_VARIANTS[1: SIMD_VARIANTS.index(cap) + 1]
    for variant in reversed(_vmath.cpu_variants()):
        if variant in allowed:
            try:
                importlib.import_module(f"bptt._vmath_{variant}")
            except ImportError:
                continue
            return variant
    return "baseline"


def load_kernels(backend, name):
    """Import the kernel module ``name`` ("elman", "output", ...) of a backend."""
    module = _KERNEL_MODULES[backend].format(name)
    if backend == "cython" and compiled_variant() != "baseline":
        module += "_" + compiled_variant()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the compiled kernels ({module}) are not built: reinstall bptt "
            f"with `pip install .`, or use backend='numpy'. ({exc})"
        ) from exc


@functools.lru_cache(maxsize=None)
def compiled_helpers(name):
    """The compiled module ``bptt._<name>`` of the build this CPU runs, or None
    when it is not built: for helpers ("inputs", "optim") that have a NumPy
    fallback, used by both backends."""
    try:
        return load_kernels("cython", name)
    except ImportError:
        return None
