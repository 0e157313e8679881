"""pytest-benchmark setup: print the BLAS kernel in use in the session header.

Run with ``python -m pytest benchmarks`` (the project's normal test run only
collects ``tests/``). See docs/benchmarks.md.
"""

import os

import numpy as np

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS")


def pytest_report_header(config):
    import bptt

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["bptt BLAS: threadpoolctl not installed, kernel unknown"]
    # Run the compiled backend once so SciPy's OpenBLAS (bptt's BLAS) is loaded.
    try:
        bptt.RNN(1, 1, 1, backend="cython").forward(np.zeros((1, 1, 1)))
    except ImportError as exc:  # kernels not built
        return [f"bptt compiled kernels unavailable: {exc}"]
    from bptt.rnn import compiled_variant
    lines = [f"bptt kernels: the {compiled_variant()} build (BPTT_SIMD caps it)"]
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        arch = lib.get("architecture") or lib.get("corearch") or "?"
        lines.append(
            f"BLAS: {lib.get('internal_api')} {lib.get('version')} arch={arch} "
            f"threads={lib.get('num_threads')} ({os.path.basename(lib.get('filepath', ''))})"
        )
    lines.append("env: " + "  ".join(f"{v}={os.environ.get(v, '<unset>')}" for v in ENV_VARS))
    load = os.getloadavg()[0]
    lines.append(f"load average: {load:.2f} on {os.cpu_count()} CPUs")
    return lines
