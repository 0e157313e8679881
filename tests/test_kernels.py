"""Kernel-variant selection (python/bptt/_kernels.py): the widest build the
CPU runs, capped by BPTT_SIMD."""

import pytest

from bptt._kernels import SIMD_VARIANTS, compiled_variant
from helpers import BUILDS


@pytest.fixture
def fresh_choice(monkeypatch):
    """compiled_variant() chooses anew (it caches its choice) under the
    environment the test sets, and the next caller chooses anew too."""
    monkeypatch.delenv("BPTT_SIMD", raising=False)
    compiled_variant.cache_clear()
    yield monkeypatch
    compiled_variant.cache_clear()


def test_variant_is_the_widest_the_cpu_runs(fresh_choice):
    assert compiled_variant() == BUILDS[-1]


@pytest.mark.parametrize("cap", ["baseline", "avx2", "avx512"])
def test_simd_cap(fresh_choice, cap):
    """BPTT_SIMD caps the build: the widest one at or below it that runs."""
    fresh_choice.setenv("BPTT_SIMD", cap.upper())
    expected = [v for v in BUILDS if SIMD_VARIANTS.index(v) <= SIMD_VARIANTS.index(cap)][-1]
    assert compiled_variant() == expected


def test_simd_cap_unknown(fresh_choice):
    fresh_choice.setenv("BPTT_SIMD", "sse9")
    with pytest.raises(ValueError, match="BPTT_SIMD must be one of baseline, avx2, avx512.*'sse9'"):
        compiled_variant()
