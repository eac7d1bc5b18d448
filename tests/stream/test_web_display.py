"""stream/web_display.py and ``spikereveal display --web``: the live view in a real browser.

The in-process tests talk HTTP to a real :class:`WebView` (aiohttp on a free loopback port). The
browser test starts ``spikereveal display --web 127.0.0.1:0`` as a child fed by a real
LosslessSender, opens the page in Debian's headless Chromium and reads the page's DOM back: the
page's own counters say how many JPEG frames it parsed from the MJPEG stream and how many stats
updates it got, and its overlay text is the display's. Skipped where Chromium is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.player import OverlayInfo
from spikereveal.stream.protocol import Result
from spikereveal.stream.transport import LosslessSender, free_tcp_endpoint
from spikereveal.stream.web_display import (
    WebView,
    WebViewError,
    check_web_address,
    mjpeg_part,
    parse_web_address,
)
from tests.conftest import WAIT_S, stop_processes

pytestmark = pytest.mark.timeout(120)

K, H, W = 4, 48, 64
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_result(seq: int) -> Result:
    """A bright bar that moves one step per sharp frame, on a dark blue blur."""
    frames = np.zeros((K, H, W, 3), np.uint8)
    for i in range(K):
        x = (seq * K + i) * 3 % W
        frames[i, :, max(0, x - 3) : x + 3] = (0, 200, 255)
    t0 = time.monotonic_ns()
    return Result(
        seq=seq,
        source_id="test",
        frames=frames,
        spike_times=tuple(range(K)),
        model="test",
        blur=np.full((H, W, 3), (90, 40, 40), np.uint8),
        stamps=(("capture.read", t0 - 2_000_000), ("engine.send", t0)),
    )


def get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", "127.0.0.1:8080"), (":0", "127.0.0.1:0"), ("[::1]:80", "[::1]:80")],
)
def test_addresses_are_normalised(text: str, expected: str) -> None:
    assert parse_web_address(text) == expected


@pytest.mark.parametrize("text", ["8080", "127.0.0.1:", "127.0.0.1:70000", "[::1:80", "host:x"])
def test_malformed_addresses_name_the_field_and_value(text: str) -> None:
    with pytest.raises(WebViewError, match=rf"^web: got {re.escape(repr(text))}"):
        parse_web_address(text)
    with pytest.raises(WebViewError, match="web: "):
        DisplayConfig(sub="tcp://127.0.0.1:5556", web=text)


def test_beyond_loopback_needs_allow_remote() -> None:
    with pytest.raises(WebViewError, match=r"0\.0\.0\.0:8080 would serve .* loopback .*allow_remote"):
        check_web_address("0.0.0.0:8080")
    assert check_web_address("0.0.0.0:8080", allow_remote=True) == ("0.0.0.0", 8080)
    assert check_web_address("localhost:1") == ("localhost", 1)


def test_cli_refuses_a_remote_web_address_in_one_line(cli) -> None:
    res = cli("display", "--sub", free_tcp_endpoint(), "--web", "0.0.0.0:0", timeout=60)
    assert res.returncode == 2, res.stderr
    assert "error: web: 0.0.0.0:0" in res.stderr and "Traceback" not in res.stderr


def test_mjpeg_part_carries_its_length() -> None:
    part = mjpeg_part(b"\xff\xd8abc")
    assert part == b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 5\r\n\r\n\xff\xd8abc\r\n"


# -- the server, in process -----------------------------------------------------------------------


def test_view_serves_frame_stats_and_keys() -> None:
    view = WebView("127.0.0.1:0")
    url = view.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and view.port != 0
        image = np.zeros((H, 2 * W, 3), np.uint8)
        image[:, W:] = (0, 0, 255)  # red right half
        view.show(image)
        view.report(OverlayInfo(fps_in=10.0, latency_last_ms=12.5, k=K, seq=3), results=1)
        view.report(OverlayInfo(fps_in=float("nan"), latency_last_ms=13.5, k=K, seq=3), results=1)

        status, body = get(url + "frame.jpg")
        assert status == 200
        frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == image.shape
        assert frame[:, W + 4 :, 2].mean() > 200 and frame[:, : W - 4, 2].mean() < 30

        stats = json.loads(get(url + "stats")[1])
        assert stats["results"] == 1 and stats["info"]["fps_in"] is None  # NaN is not JSON
        assert [p[1] for p in stats["latency"]] == [12.5]  # one point per new result, not per call
        assert stats["lines"][1].startswith("latency last 13.5 ms")

        assert get(url + "key", b"n") == (200, b"ok")
        assert view.wait_key(2000) == ord("n")
        assert view.wait_key(1) == -1
        status, body = get(url + "key", b"q")  # a viewer must not end the pipeline
        assert status == 400 and b"expected one of" in body
        assert b"<canvas" in get(url)[1] and not view.closed
    finally:
        view.close()
    with pytest.raises(OSError):
        get(url + "stats")


def test_a_busy_port_is_one_clear_error() -> None:
    first = WebView("127.0.0.1:0")
    first.start()
    try:
        with pytest.raises(WebViewError, match=rf"web: cannot listen on 127\.0\.0\.1:{first.port}"):
            WebView(f"127.0.0.1:{first.port}").start()
    finally:
        first.close()


# -- the real thing: display process, publisher, headless Chromium --------------------------------


def chromium_dom(url: str, user_data: Path, budget_ms: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            CHROMIUM or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={user_data}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def dom_number(dom: str, element_id: str) -> int:
    match = re.search(rf'id="{element_id}">(\d+)<', dom)
    assert match, f"no #{element_id} counter in the page:\n{dom[:2000]}"
    return int(match.group(1))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_a_headless_browser_sees_frames_and_the_overlay_update(tmp_path: Path) -> None:
    summary_path, log_path = tmp_path / "latency.json", tmp_path / "display.log"
    procs: list[subprocess.Popen] = []
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        try:
            with log_path.open("w") as log:
                display = subprocess.Popen(
                    [sys.executable, "-m", "spikereveal.tools.cli", "display", "--sub", sender.endpoint,
                     "--web", "127.0.0.1:0", "--rgb-fps", "10", "--warmup", "1", "--summary", summary_path],
                    stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                )  # fmt: skip
            procs.append(display)
            seq = 0
            deadline = time.monotonic() + WAIT_S
            while not (found := re.search(r"web view at (http://\S+)", log_path.read_text())):
                assert display.poll() is None and time.monotonic() < deadline, log_path.read_text()
                assert sender.send(make_result(seq), timeout_s=WAIT_S)  # the display takes them meanwhile
                seq += 1
            url = found.group(1)

            browser = chromium_dom(url, tmp_path / "chromium", budget_ms=3000)
            procs.append(browser)
            deadline = time.monotonic() + 60
            while browser.poll() is None:  # feed the display, ~10 results/s, while the page watches
                assert time.monotonic() < deadline, "chromium did not finish within 60 s"
                assert sender.send(make_result(seq), timeout_s=WAIT_S), f"result {seq} not taken"
                seq += 1
                time.sleep(0.1)
            dom = browser.stdout.read() if browser.stdout else ""
            assert sender.flush(timeout_s=WAIT_S)
            sender.close(final_state="finished")
            assert display.wait(WAIT_S) == 0, log_path.read_text()
        finally:
            stop_processes(procs, timeout_s=10)

    # The page parsed JPEG frames out of the MJPEG stream and got several stats updates.
    assert dom_number(dom, "frames") >= 5, dom[:2000]
    assert dom_number(dom, "updates") >= 2
    assert 1 <= dom_number(dom, "results") <= seq
    assert dom_number(dom, "npoints") >= 1  # the latency plot has points
    overlay = re.search(r'<pre id="overlay">([^<]*)</pre>', dom)
    assert overlay and re.search(r"latency last \d+\.\d ms", overlay.group(1)), dom[:2000]
    assert f"K={K}" in overlay.group(1)

    summary = json.loads(summary_path.read_text())
    assert summary["mode"] == "web" and summary["outputs"]["web"] == url
    assert summary["results"] == seq and summary["exit"] == "finished"
    assert summary["frames_shown"] == seq * K  # lossless: every frame played, none skipped


def test_frames_are_wanted_at_the_stream_pace_only() -> None:
    """The display skips composing frames nobody is sent: paced with viewers, every 0.5 s without."""
    view = WebView("127.0.0.1:0", max_fps=50.0)
    t = time.monotonic()
    assert view.wants_frame(t)  # nothing shown yet
    view.show(np.zeros((4, 4, 3), np.uint8))
    shown = time.monotonic()
    assert not view.wants_frame(shown + 0.1) and view.wants_frame(shown + 0.6)  # no viewer: /frame.jpg pace
    view.viewers = 1  # as the /stream.mjpg handler counts one
    assert not view.wants_frame(shown + 0.01) and view.wants_frame(shown + 0.03)  # 50 fps
