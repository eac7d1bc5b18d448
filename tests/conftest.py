"""Fixtures shared by the whole suite: the ../shared reference data and a CLI runner."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

#: How long a node-process test waits for anything (a start, a message, an exit): generous for a
#: process start on a loaded 2-core machine; a bound on polling, never a sleep.
WAIT_S = 20.0


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory) -> None:
    """Keep the ONNX export cache of this run (and of the CLIs it starts) out of the user's home."""
    os.environ["SPIKEREVEAL_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session", autouse=True)
def _no_default_weights(tmp_path_factory) -> None:
    """Tests (and the CLIs they start) see a tree without default LDN weights unless they ask.

    The suite's expectations then do not change when ``make default-weights`` has run; tests of
    the default-weights wiring take :func:`default_weights` (a tiny file made here) instead.
    """
    from spikereveal.engine.deblur import DEFAULT_WEIGHTS_ENV

    os.environ[DEFAULT_WEIGHTS_ENV] = str(tmp_path_factory.mktemp("nodefault") / "ldn.safetensors")


@pytest.fixture(scope="session")
def tiny_ldn_weights(tmp_path_factory) -> Path:
    """An LDN with random weights (seed 0) saved as the project's safetensors, with training-like metadata."""
    import torch

    from spikereveal.engine.ldn import LDN
    from spikereveal.engine.weights import save_net

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_weights") / "tiny_ldn.safetensors"
    metadata = {"steps": "0", "seed": "0", "spike_density": "0.9925", "command": "test", "teacher": "none"}
    return save_net(path, LDN(), "ldn", metadata)


@pytest.fixture
def default_weights(monkeypatch: pytest.MonkeyPatch, tiny_ldn_weights: Path) -> Path:
    """Make :func:`tiny_ldn_weights` the default LDN weights for this test and its child processes."""
    from spikereveal.engine.deblur import DEFAULT_WEIGHTS_ENV

    monkeypatch.setenv(DEFAULT_WEIGHTS_ENV, str(tiny_ldn_weights))
    return tiny_ldn_weights


@functools.cache
def cuda_available() -> bool:
    """Whether torch sees a CUDA device; torch is imported only when a ``gpu`` test asks."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``gpu`` (pyproject declares the marker) skip cleanly on machines without CUDA."""
    if item.get_closest_marker("gpu") is not None and not cuda_available():
        pytest.skip("needs a CUDA device (torch.cuda.is_available() is False)")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    """The torch device a test runs on: "cpu" always, "cuda" where present (kornia's device fixture).

    The cuda case carries the ``gpu`` marker, so ``-m "not gpu"`` leaves it out and
    :func:`pytest_runtest_setup` skips it where there is no device.
    """
    return request.param


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository (reference weights and third-party clips); skip if absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared reference data is not present")
    return SHARED


@pytest.fixture(scope="session")
def paper_weights(shared_dir: Path) -> Path:
    """The LDN checkpoint released with the paper; skip if absent."""
    path = shared_dir / "weights" / "ssdm_ldn_official.pth"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_spikereveal(*args: str, timeout: float = 240, cwd: Path | None = None) -> CliResult:
    """Run the real ``spikereveal`` CLI in a child process (bounded by ``timeout`` seconds)."""
    proc = subprocess.run(
        [sys.executable, "-m", "spikereveal.tools.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    """The CLI runner as a fixture: ``cli("tfp", "--help")``."""
    return run_spikereveal


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory) -> Path:
    """A small GOPRO-spike-layout dataset made by the project's own simulator (1 sample, 32x48 spikes)."""
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(spike_size=(32, 48), seed=1)
    out = tmp_path_factory.mktemp("sim") / "data"
    frames = pan_scene(config.frames_per_sample, config.blur_size)
    simulate_dataset(frames, config, out, samples=1, source="builtin:pan", progress=False)
    return out


def stop_processes(procs: Iterable[subprocess.Popen], timeout_s: float = 5.0) -> None:
    """Terminate what still runs, wait, kill what does not stop: no test leaves a process behind."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``spikereveal -v <args>`` as a node process, its stderr in a log file (``proc.log_path``)."""
    procs: list[subprocess.Popen] = []

    def start(*args: object) -> subprocess.Popen:
        log_path = tmp_path / f"node{len(procs)}.log"
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "spikereveal.tools.cli", "-v", *map(str, args)],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    stop_processes(procs)
