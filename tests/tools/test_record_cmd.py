"""tools/record_cmd.py: ``spikereveal record`` through the real CLI, a SIGKILL mid-stream, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spikereveal.capture.dat import open_dat
from spikereveal.capture.recording import INDEX_NAME
from spikereveal.capture.sources import open_source
from spikereveal.tools.cli import main
from tests.capture.test_recording import assert_same_capture
from tests.conftest import WAIT_S


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ") or "Traceback" in line]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


def test_record_count_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rec"
    assert main(["record", "--source", "sim:pan?size=16x24&seed=4", "--out", str(out), "--count", "3"]) == 0
    assert "recorded 3 bundles" in capsys.readouterr().err
    live = list(open_source("sim:pan?size=16x24&seed=4&count=3"))
    for r, c in zip(open_source(f"rec:{out}"), live, strict=True):
        assert_same_capture(r, c)


def test_record_seconds_counts_source_time(tmp_path: Path) -> None:
    # 137 frames at 20 kHz = 6.85 ms per capture: 20 ms of source time holds 3 captures (0, 6.85, 13.7 ms).
    out = tmp_path / "rec"
    assert main(["record", "--source", "sim:pan?size=16x24", "--out", str(out), "--seconds", "0.02"]) == 0
    assert len((out / INDEX_NAME).read_text().splitlines()) == 3


def test_sigkill_mid_stream_keeps_every_completed_bundle(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    uri = "sim:pan?size=16x24&seed=7"  # endless
    cmd = [sys.executable, "-m", "spikereveal.tools.cli", "record", "--source", uri, "--out", str(out)]
    # rate 0.05: one bundle every ~0.14 s, so the kill lands while the recorder is mid-stream.
    proc = subprocess.Popen([*cmd, "--rate", "0.05"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            index = out / INDEX_NAME
            if index.is_file() and index.read_bytes().count(b"\n") >= 4:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.02)
        else:
            pytest.fail("the recorder wrote no 4 bundles in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    replay = open_source(f"rec:{out}")
    done = len(replay)
    assert done >= 4
    live = list(open_source(f"{uri}&count={done}"))
    for r, c in zip(replay, live, strict=True):
        assert_same_capture(r, c)
    # The dataset view and the continuous stream hold every completed bundle too.
    assert len(open_source(str(out))) >= done
    with open_dat(out / "stream" / "pan.dat") as dat:
        stream = dat.read()
    frames = json.loads((out / INDEX_NAME).read_text().splitlines()[done - 1])["stream"]["frames_after"]
    assert stream.shape[0] >= frames
    assert np.array_equal(stream[:frames], np.concatenate([c.sample.spikes for c in live]))


def test_a_folder_that_is_not_a_recording_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["capture", "--source", f"rec:{tmp_path / 'empty'}"]) == 2
    assert "empty: not a recording (expected index.jsonl" in _one_error_line(capsys)


def test_a_tampered_index_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "rec"
    assert main(["record", "--source", "sim:pan?size=16x24&count=2", "--out", str(rec)]) == 0
    capsys.readouterr()
    index = rec / INDEX_NAME
    lines = [json.loads(t) for t in index.read_text().splitlines()]
    lines[0]["files"]["blur"]["sha256"] = "0" * 64
    index.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["record", "--source", f"rec:{rec}", "--out", str(tmp_path / "copy")]) == 2
    assert "0.png: contents differ from" in _one_error_line(capsys)
    lines[0]["files"]["blur"]["bytes"] += 1
    index.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["capture", "--source", f"rec:{rec}"]) == 2
    line = _one_error_line(capsys)
    assert "0.png: " in line and f"(seq 0) says {lines[0]['files']['blur']['bytes']}" in line


def test_recording_into_a_used_folder_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["record", "--source", "sim:pan?size=16x24&count=1", "--out", str(tmp_path)]) == 2
    assert "output folder exists and is not empty" in _one_error_line(capsys)
