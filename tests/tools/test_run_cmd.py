"""``spikereveal run``: three real node processes over real ZeroMQ sockets, supervised."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.media import read_video


class RunProcess:
    """``spikereveal run`` in a child process whose output lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spikereveal.tools.cli", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)

    def wait_for_line(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        regex = re.compile(pattern)
        for line in self.lines:
            if m := regex.search(line):
                return m
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.lines.append(line)
            if m := regex.search(line):
                return m
        raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s:\n{''.join(self.lines)}")

    def finish(self, timeout_s: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        time.sleep(0)  # let the pump thread drain
        while True:
            try:
                self.lines.append(self._queue.get(timeout=0.5))
            except queue.Empty:
                break
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _pids(run: RunProcess) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", run.output)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _all_gone(pids: dict[str, int], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids.values()):
            return True
        time.sleep(0.1)
    return False


def test_replay_runs_to_the_end_with_logs_video_and_latency(tmp_path):
    # GIVEN a finite simulated source of 4 exposures, replayed as fast as possible, K=2
    video, summary = tmp_path / "run.mp4", tmp_path / "latency.json"
    run = RunProcess(
        "--source",
        "sim:pan?size=16x24&count=4",
        "--rate",
        "max",
        "--times",
        "2",
        "--no-window",
        "--warmup",
        "1",
        "--record",
        str(video),
        "--summary",
        str(summary),
    )
    try:
        # WHEN it runs to the end of the source
        code = run.finish(timeout_s=120)
    finally:
        run.kill()
    # THEN every node ran, all exited cleanly, and the video holds 4 x 2 frames
    assert code == 0, run.output
    for node in ("capture", "engine", "display"):
        assert f"[{node}]" in run.output
    assert "latency summary" in run.output and "end_to_end" in run.output
    frames = len(read_video(video))
    assert frames == 8
    data = json.loads(summary.read_text())
    assert data["end_to_end"]["n"] == 3  # 4 results, 1 warm-up
    assert data["results"] == 4 and data["frames_written"] == 8


def _endless_run(tmp_path) -> RunProcess:
    """A run of the endless simulated source, in real time, headless."""
    return RunProcess(
        "--source",
        "sim:pan?size=16x24",
        "--rate",
        "realtime",
        "--no-window",
        "--record",
        str(tmp_path / "run.mp4"),
        "--summary",
        str(tmp_path / "latency.json"),
    )


def test_a_dead_engine_stops_the_run_with_its_name(tmp_path):
    run = _endless_run(tmp_path)
    try:
        run.wait_for_line(r"started capture")
        pids = _pids(run)
        run.wait_for_line(r"\[engine\]")  # the engine is up and talking
        os.kill(pids["engine"], signal.SIGKILL)
        code = run.finish(timeout_s=60)
    finally:
        run.kill()
    assert code != 0
    assert "node 'engine' was killed by SIGKILL" in run.output
    assert _all_gone(pids), f"nodes left running: {pids}"


def test_sigint_stops_every_node(tmp_path):
    run = _endless_run(tmp_path)
    try:
        run.wait_for_line(r"started capture")
        pids = _pids(run)
        run.wait_for_line(r"\[display\]")
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(timeout_s=60)
    finally:
        run.kill()
    assert code == 130, run.output
    assert _all_gone(pids), f"nodes left running: {pids}"


@pytest.mark.parametrize(("text", "needle"), [("engine: {tims: 3}\n", "unknown key(s) tims")])
def test_bad_config_is_one_line(cli, tmp_path, text, needle):
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    res = cli("run", "--config", path)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr


def test_a_display_that_ends_first_ends_the_whole_run(tmp_path):
    # GIVEN an endless run (capture and engine would wait for the display forever)
    run = _endless_run(tmp_path)
    try:
        run.wait_for_line(r"started capture")
        pids = _pids(run)
        run.wait_for_line(r"\[display\] .*results from")  # its signal handlers are installed
        # WHEN only the display ends (as q, Esc or closing its window would end it)
        os.kill(pids["display"], signal.SIGINT)
        code = run.finish(timeout_s=60)
    finally:
        run.kill()
    # THEN the run ends cleanly, says why, and stopped capture and engine
    assert code == 0, run.output
    assert "[run] the display ended (signal): stopped the other nodes" in run.output
    assert _all_gone(pids), f"nodes left running: {pids}"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--source", "sim:pan?size=63x95"), "size 63x95: h*w must be a multiple of 8"),
        (("--weights", "missing.safetensors"), "engine.weights: missing.safetensors: no such file"),
        (("--record", "out.gif"), "out.gif"),
        (("--times", "0"), "--times"),
    ],
)
def test_bad_settings_are_refused_before_any_node_starts(cli, args, needle):
    res = cli("run", "--no-window", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr + res.stdout
    assert "started" not in res.stdout  # no process was started


def test_a_slow_engine_still_records_at_the_sensor_rate(tmp_path):
    # GIVEN a simulated source (one RGB frame per 137 spike frames at 20 kHz: ~146 Hz) replayed as
    # fast as possible into an engine made slow (150 ms a bundle: results arrive at under 7 Hz)
    from spikereveal.capture.datasets import GOPRO_FRAMES_PER_SAMPLE
    from spikereveal.capture.sources import DEFAULT_SPIKE_RATE_HZ

    rig = tmp_path / "rig.yaml"
    rig.write_text("engine: {min_period_ms: 150, times: 2}\n")  # a node setting bound by name
    video, summary = tmp_path / "run.mp4", tmp_path / "latency.json"
    run = RunProcess(
        "--config", str(rig), "--source", "sim:pan?size=16x24&count=4", "--rate", "max",
        "--no-window", "--record", str(video), "--summary", str(summary),
    )  # fmt: skip
    try:
        code = run.finish(timeout_s=120)
    finally:
        run.kill()
    assert code == 0, run.output
    # THEN the video plays at K x the sensor's RGB rate, not at the rate results arrived
    sensor_hz = DEFAULT_SPIKE_RATE_HZ / GOPRO_FRAMES_PER_SAMPLE
    data = json.loads(summary.read_text())
    assert data["rgb_fps"] == pytest.approx(sensor_hz, rel=1e-3)
    assert data["video_fps"] == pytest.approx(2 * sensor_hz, rel=1e-3)
    assert len(read_video(video)) == 8


def test_the_capture_node_refuses_a_bad_size_in_one_line(cli):
    res = cli("capture", "--source", "sim:pan?size=63x95", "--rate", "max", timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: source 'sim:pan?size=63x95': spike size 63x95: h*w must be a multiple of 8 "
        "(whole bytes per .dat frame)"
    ]


@pytest.mark.slow
def test_run_with_two_engines_shows_every_result_once_in_order(tmp_path):
    # GIVEN a finite simulated source of 6 exposures served by a pool of two engines (sdm)
    video, summary = tmp_path / "run.mp4", tmp_path / "latency.json"
    run = RunProcess(
        "--source", "sim:pan?size=16x24&count=6", "--rate", "max", "--times", "2", "--model", "sdm",
        "--engines", "2", "--no-window", "--warmup", "1", "--record", str(video), "--summary", str(summary),
    )  # fmt: skip
    try:
        code = run.finish(timeout_s=120)
    finally:
        run.kill()
    # THEN both engines ran and the display got all 6 results, none twice
    assert code == 0, run.output
    assert "[engine-0]" in run.output and "[engine-1]" in run.output
    assert len(read_video(video)) == 6 * 2
    data = json.loads(summary.read_text())
    assert data.get("duplicates", 0) == 0
    assert set(data["reorder"]) == {"reordered", "held_max", "gaps", "duplicates", "late"}  # the pool's


def test_a_short_fast_stream_waits_for_every_engine_and_the_run_ends(tmp_path):
    # GIVEN a stream that is over in well under a second (the embedded sample, looped 4 times, rate
    # max) and two engines, one of which may still be starting when it would have ended
    summary = tmp_path / "latency.json"
    run = RunProcess(
        "--source", "sample", "--loop", "--count", "4", "--rate", "max", "--times", "1", "--model", "sdm",
        "--engines", "2", "--policy", "lossless", "--no-window", "--warmup", "1",
        "--record", str(tmp_path / "run.mp4"), "--summary", str(summary),
    )  # fmt: skip
    try:
        code = run.finish(timeout_s=120)
    finally:
        run.kill()
    # THEN the capture waited for both engines before its first bundle, so both heard the end
    # and the display, waiting for both, finished with every result
    assert code == 0, run.output
    assert json.loads(summary.read_text())["results"] == 4


def _rig_run_file(tmp_path, summary, video):
    """A run file whose ``rig:`` section is a real rig (tests/capture/rig_harness.py): a 3x video
    warped by calib.yaml onto the 4x spike grid, spikes from a growing .dat; the engine holds the
    same calibration file."""
    import textwrap

    from tests.capture.rig_harness import rig_keys

    path = tmp_path / "run.yaml"
    path.write_text(
        "policy: lossless\n"
        f"rig:\n{textwrap.indent(rig_keys(tmp_path, frames=8), '  ')}"
        f"engine: {{model: sdm, times: 2, calibration: '{tmp_path / 'calib.yaml'}'}}\n"
        f"display: {{window: false, record: '{video}', summary: '{summary}', warmup: 0}}\n"
    )
    return path


def test_run_config_with_a_rig_section_deblurs_the_live_rig_end_to_end(tmp_path):
    from tests.capture.rig_harness import SpikeFileWriter

    # GIVEN a run file with a rig: section (paths relative to it) and a spike camera writing its file
    summary, video = tmp_path / "latency.json", tmp_path / "run.mp4"
    path = _rig_run_file(tmp_path, summary, video)
    with SpikeFileWriter(tmp_path / "spikes.dat"):
        time.sleep(0.3)  # the spike camera streams before the RGB camera starts
        # WHEN `spikereveal run --config run.yaml` runs capture, engine and display to the end
        run = RunProcess("--config", str(path))
        try:
            code = run.finish(timeout_s=60)
        finally:
            run.kill()
    # THEN the rig's bundles (calibration 'rig-test', as the engine's) were all deblurred
    assert code == 0, run.output
    assert "calibration 'rig-test'" in run.output
    data = json.loads(summary.read_text())
    totals = data["sync"]["totals"]
    assert data["results"] >= 1 and data["results"] == totals["exposures"]
    assert totals["exposures"] + totals["skipped_total"] <= 8 and totals["restarts"] == 0
    latest = data["sync"]["latest"]  # one rig opened once: its running counts are the totals
    assert latest["exposures"] == totals["exposures"] and latest["lost_blocks"] == totals["lost_blocks"]
    assert data["reorder"] is None
    assert data["frames_written"] == 2 * data["results"] and len(read_video(video)) == 2 * data["results"]
    assert "sync: " in run.output and f"sync: {totals['exposures']} exposures" in run.output


def test_a_rig_section_and_a_source_flag_together_are_one_line(cli, tmp_path):
    path = _rig_run_file(tmp_path, tmp_path / "latency.json", tmp_path / "run.mp4")
    res = cli("run", "--config", path, "--source", "sample")
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert "the rig: section is the capture source" in res.stderr and "run.yaml" in res.stderr
    assert "started" not in res.stdout


def test_an_engine_calibration_other_than_the_rig_is_refused_before_any_node_starts(cli, tmp_path):
    from spikereveal.calibration.model import Calibration, save_calibration

    path = _rig_run_file(tmp_path, tmp_path / "latency.json", tmp_path / "run.mp4")
    save_calibration(tmp_path / "other.yaml", Calibration(id="bench"))
    # the file's engine calibration is the rig's (rig-test); make it another one
    text = path.read_text().replace(str(tmp_path / "calib.yaml"), str(tmp_path / "other.yaml"))
    path.write_text(text)
    res = cli("run", "--config", path)
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert "engine.calibration:" in res.stderr and "'bench'" in res.stderr and "'rig-test'" in res.stderr
    assert "started" not in res.stdout
    path.write_text(text.replace(str(tmp_path / "other.yaml"), str(tmp_path / "missing.yaml")))
    res = cli("run", "--config", path)
    assert res.returncode == 2 and "engine.calibration:" in res.stderr and "missing.yaml" in res.stderr
