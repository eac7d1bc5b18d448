"""Every kernel check through the CPU shim is bit-exact, and the checks fail on planted kernel bugs."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from spikereveal.engine.kernels import checks
from spikereveal.engine.kernels.shim import KERNEL_SOURCE, ShimRunner

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU shim needs g++")

CASES = checks.shim_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_is_bit_exact_through_the_shim(case):
    result = checks.run_case(case, "shim")
    assert result.ok, f"{result.name}: {result.mismatches}/{result.total} values differ {result.detail}"
    assert result.total > 0


def test_cases_cover_what_the_issue_asks():
    kinds = Counter((c.kernel, c.dtype) for c in CASES)
    assert {("unpack_windows", "float32"), ("unpack_windows", "float16"), ("tfp_counts", "int32")} <= set(
        kinds
    )
    assert {("tfp_counts", "float32"), ("sdm_upsample", "float32")} <= set(kinds)
    for kernel in checks.KERNELS:
        mine = [c for c in CASES if c.kernel == kernel]
        assert {c.n_times for c in mine} >= {1, 5, 7}
        assert {c.geometry.flip for c in mine} == {True, False}
        assert any(c.geometry.row_tag_bits for c in mine)
        assert any(c.geometry.width % 2 for c in mine)  # odd width
        assert any(c.geometry.row_bits % 8 for c in mine)  # rows not byte aligned


class SilentRunner:
    """A runner whose kernels write nothing: the poisoned outputs must make every case fail."""

    device = "cpu"

    def launch(self, name, grid, block, args, shared_bytes=0):
        return None


@pytest.mark.parametrize("kernel", checks.KERNELS)
def test_a_kernel_that_writes_nothing_fails(kernel):
    case = next(c for c in CASES if c.kernel == kernel)
    result = checks.run_case(case, SilentRunner())
    assert not result.ok and result.mismatches > 0


MUTATIONS = {
    "msb-first bit order": (
        "(byte >> (int)(bit & 7)) & 1",
        "(byte >> (7 - (int)(bit & 7))) & 1",
        "unpack_windows",
    ),
    "flip ignored": ("const int row = flip ? height - 1 - y : y;", "const int row = y;", "tfp_counts"),
    "lerp without fma": (
        "return __fmaf_rn(__fsub_rn(b, a), f, a);",
        "return a * (1.0f - f) + b * f;",
        "sdm_upsample",
    ),
    "short window off by one": ("if (d >= -half && d <= half)", "if (d >= -half && d < half)", "tfp_counts"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_checks_catch_a_planted_kernel_bug(tmp_path, monkeypatch, mutation):
    monkeypatch.setenv("SPIKEREVEAL_CACHE_DIR", str(tmp_path / "cache"))
    old, new, kernel = MUTATIONS[mutation]
    source = KERNEL_SOURCE.read_text()
    assert old in source
    mutant = tmp_path / "spikes.cu"
    mutant.write_text(source.replace(old, new))
    runner = ShimRunner(mutant)
    results = [checks.run_case(c, runner) for c in CASES if c.kernel == kernel and c.n_times == 5][:4]
    assert results and not all(r.ok for r in results)


def test_table_lists_every_case():
    results = [checks.run_case(c) for c in CASES[:3]]
    table = checks.format_table(results)
    assert all(r.name in table for r in results)
    assert table.endswith("3/3 cases bit-exact")
