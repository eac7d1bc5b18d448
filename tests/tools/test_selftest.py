"""tools/selftest.py, its click command and the standalone launcher for a bare GPU machine."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from spikereveal.tools import selftest
from tests.conftest import REPO, cuda_available


def _no_gpu() -> None:
    if cuda_available():
        pytest.skip("a CUDA device is present: --gpu would run for real")


def test_format_table_aligns_and_marks() -> None:
    rows = [
        selftest.Row("kernel", "unpack", "137x250x400", "0/10 values differ", True),
        selftest.Row("time", "ldn", "1000x1600 K=7", "5.000 ms"),
        selftest.Row("backend", "torch cuda fp16", "2x256x384", "rel diff 0.5", False),
    ]
    lines = selftest.format_table(rows).splitlines()
    assert lines[0].split() == ["section", "check", "shape", "result", "ok"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].endswith("ok") and lines[4].endswith("FAIL") and not lines[3].endswith(("ok", "FAIL"))
    assert (
        len({line.index("shape" if i == 0 else rows[i - 2].shape) for i, line in enumerate(lines) if i != 1})
        == 1
    )


def test_shim_passes_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("g++") is None:
        pytest.skip("the CPU shim needs g++")
    if importlib.util.find_spec("spikereveal.engine.kernels.checks") is None:
        pytest.skip("engine/kernels/checks.py (the kernel cases) is not written yet")
    path = tmp_path / "shim.json"
    code = selftest.main(["--shim", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    payload = json.loads(path.read_text())
    assert payload["mode"] == "shim" and payload["rows"]
    assert all(row["ok"] is True for row in payload["rows"])
    kernels = {row["name"].split()[0] for row in payload["rows"]}
    assert kernels == {"unpack_windows", "tfp_counts", "sdm_upsample"}
    # The table comes last, after the JSON line, and ends with the summary.
    assert out.splitlines()[-1].startswith(
        f"{len(payload['rows'])} of {len(payload['rows'])} rows without failure"
    )


def test_gpu_without_a_gpu_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _no_gpu()
    proc = subprocess.run(
        [sys.executable, "-m", "spikereveal.tools.selftest", "--gpu", "--json", str(tmp_path / "g.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: selftest --gpu: no CUDA device here (torch.cuda.is_available() is False)"
    ]
    assert not (tmp_path / "g.json").exists()


def test_cli_selftest(cli, tmp_path: Path) -> None:
    result = cli("selftest")
    assert result.returncode == 2 and "choose --shim" in result.stderr
    if not cuda_available():
        result = cli("selftest", "--gpu", "--json", str(tmp_path / "g.json"))
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "error: selftest --gpu: no CUDA device here (torch.cuda.is_available() is False)"
        ]


# The GPU machine has no pyzmq, no click and no project install: block the first two and hide the
# editable install, then run the launcher the way the README says, from a copy of the checkout.
_BARE_MACHINE = textwrap.dedent(
    """
    import importlib.abc, runpy, sys

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("zmq", "click"):
                raise ImportError(f"No module named {name!r} (blocked: not on the GPU machine)")
            return None

    sys.meta_path[:] = [Missing()] + [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
    sys.argv = ["tools/selftest_standalone.py", *sys.argv[1:]]
    try:
        runpy.run_path("tools/selftest_standalone.py", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    # What --gpu imports on a GPU, imported here too: none of it may need zmq or click.
    import spikereveal.engine.backends.torch_backend, spikereveal.engine.kernels.checks
    import spikereveal.engine.kernels.cuda_loader, spikereveal.engine.backends.onnxruntime_backend
    import spikereveal.tools.selftest as st
    print("exit", code)
    print("from", st.__file__)
    print("loaded", sorted(m for m in ("zmq", "click") if m in sys.modules))
    """
)


def test_standalone_launcher_runs_from_a_raw_checkout_without_zmq(tmp_path: Path) -> None:
    _no_gpu()
    checkout = tmp_path / "checkout"
    for name in ("capture", "stream", "engine", "calibration", "tools"):
        shutil.copytree(
            REPO / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors")
        )
    proc = subprocess.run(
        [sys.executable, "-c", _BARE_MACHINE, "--gpu"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=checkout,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "exit 2" in lines, proc.stdout + proc.stderr
    assert "loaded []" in lines
    (origin,) = [line for line in lines if line.startswith("from ")]
    # Loaded through the launcher's symlinked namespace, i.e. from the copied checkout's files.
    assert Path(origin.removeprefix("from ")).resolve() == (checkout / "tools" / "selftest.py").resolve()
    assert "no CUDA device here" in proc.stderr


def test_import_pulls_in_neither_zmq_nor_torch() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; import spikereveal.tools.selftest; print('zmq' in sys.modules, 'torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.split() == ["False", "False"], proc.stderr
