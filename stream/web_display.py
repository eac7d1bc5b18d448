"""The display's live view as a web page: for an engine on a headless box, watched from any browser.

``spikereveal display --web 127.0.0.1:8080`` puts a :class:`WebView` where the OpenCV window
would be. The display loop drives it exactly like the window (``show`` a canvas, ``wait_key``,
``closed``), so the page plays the same blur | sharp canvas at K x the RGB rate with the same
overlay burnt in, and :meth:`WebView.report` adds the overlay's numbers and a latency series,
which the page prints as text and plots on a ``<canvas>``.

The server is aiohttp (a well-kept asyncio HTTP server) on its own thread and event loop, so the
display loop never waits for a browser. Endpoints:

- ``/``: the page (self-contained: no CDN, no script from elsewhere; the box may be offline);
- ``/stream.mjpg``: MJPEG, ``multipart/x-mixed-replace`` of JPEG frames (``cv2.imencode``), each
  part with its ``Content-Length`` so the page can count frames as it parses them. Each viewer gets
  the newest frame when it is ready for one (a slow viewer skips frames, never delays the node),
  at most :data:`MAX_STREAM_FPS`; each frame is encoded once, however many viewers;
- ``/frame.jpg``: the newest frame once; ``/stats``: overlay numbers and latency series as JSON;
- ``/events``: the same as server-sent events (new latency points only), a few per second;
- ``POST /key``: space (pause/resume), ``n`` (step) and ``s`` (snapshot), as in the window. ``q`` is
  refused: a viewer on another host should not end the pipeline.

The server binds to loopback unless ``allow_remote`` (camera pictures are data worth asking for).
aiohttp is imported when a view starts, so the display without ``web`` does not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import queue
import threading
import time
from collections import deque
from typing import Any

import cv2
import numpy as np

from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.player import OverlayInfo, overlay_lines
from spikereveal.stream.sockets import is_loopback

log = logging.getLogger("spikereveal.display")

#: Seconds between the frames composed while no viewer streams (what ``/frame.jpg`` may lag).
IDLE_FRAME_S = 0.5

#: Most frames per second sent to one viewer: a browser paints at the screen's 60 Hz, so more only
#: costs JPEG encoding on the engine's box (K x a 30 Hz camera is 150 frames/s).
MAX_STREAM_FPS = 60.0
#: Stats pushed per second over ``/events``: enough for a live plot, little next to the frames.
EVENTS_HZ = 5.0
#: Latency points kept for the plot (and for a viewer that opens the page late).
LATENCY_POINTS = 600
JPEG_QUALITY = 85
BOUNDARY = "frame"
#: Keys a viewer may send (the window's keys, minus quitting).
WEB_KEYS = {"space": ord(" "), " ": ord(" "), "n": ord("n"), ".": ord("n"), "s": ord("s")}


class WebViewError(SpikeRevealError):
    """A web view address that is malformed, not allowed, or cannot be listened on."""


def parse_web_address(text: Any) -> str:
    """``HOST:PORT`` checked and normalised (``[::1]:8080`` for IPv6; port 0 picks a free one).

    Examples:
        >>> parse_web_address("127.0.0.1:8080")
        '127.0.0.1:8080'
        >>> parse_web_address(":8080")
        '127.0.0.1:8080'
        >>> parse_web_address("localhost")
        Traceback (most recent call last):
        ...
        spikereveal.stream.web_display.WebViewError: web: got 'localhost', expected HOST:PORT such as 127.0.0.1:8080
    """
    host, port = split_web_address(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_web_address(text: Any) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT``; an empty host is loopback (never "every interface")."""
    expected = "expected HOST:PORT such as 127.0.0.1:8080"
    if not isinstance(text, str):
        raise WebViewError(f"web: got {text!r}, {expected}")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if not sep:
            raise WebViewError(f"web: got {text!r}: unbalanced '[' in an IPv6 address, {expected}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise WebViewError(f"web: got {text!r}, {expected}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WebViewError(f"web: got {text!r}: port {port!r} is not 0..65535, {expected}")
    return host or "127.0.0.1", int(port)


def check_web_address(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """(host, port) to listen on; a host beyond loopback needs ``allow_remote``."""
    host, port = split_web_address(text)
    if not is_loopback(host):
        if not allow_remote:
            raise WebViewError(
                f"web: {text} would serve the camera's pictures to other hosts; expected a loopback "
                "address such as 127.0.0.1:8080, or pass --allow-remote (allow_remote: true in a run YAML) "
                "to serve other hosts on purpose"
            )
        log.warning("web: serving %s beyond loopback; any host that reaches this port can watch", text)
    return host, port


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H, W, 3) uint8 BGR -> JPEG bytes."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise WebViewError(f"web: cv2.imencode could not encode an image of shape {image.shape}")
    return data.tobytes()


def mjpeg_part(jpeg: bytes) -> bytes:
    """One part of the ``multipart/x-mixed-replace`` stream (with the length the page reads)."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


class WebView:
    """The live view served over HTTP; drop-in for the display's OpenCV window.

    ``address``: ``HOST:PORT`` (port 0: a free one; :attr:`url` says which). Call :meth:`start`
    first; :meth:`show` and :meth:`report` are called from the display's thread, never block on
    a viewer, and cost only a reference store and a wake-up when nobody watches.
    """

    def __init__(
        self,
        address: str,
        *,
        allow_remote: bool = False,
        title: str = "SpikeReveal-RT",
        max_fps: float = MAX_STREAM_FPS,
    ) -> None:
        self.host, self.port = check_web_address(address, allow_remote=allow_remote)
        self.title, self.min_interval_s = title, 1.0 / max_fps
        self.url = ""
        self.frames_sent = 0  # JPEG parts sent, all viewers together
        self.viewers_total = 0
        self.viewers = 0
        self._lock = threading.Lock()  # guards what show/report hand to the server thread
        self._image: np.ndarray | None = None
        self._version = 0
        self._stats: dict[str, Any] = {"lines": [], "results": 0}
        self._points: deque[tuple[int, float, float]] = deque(maxlen=LATENCY_POINTS)  # (index, t_s, ms)
        self._point_index = 0
        self._last_results = 0
        self._t0 = time.monotonic()
        self._shown_at_s = -math.inf
        self._keys: queue.Queue[int] = queue.Queue()
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- the display's side (its thread) --------------------------------------------------------
    def start(self, timeout_s: float = 20.0) -> str:
        """Listen (on the server thread) and return the page's URL; a busy port is one clear error."""
        try:
            import aiohttp.web  # noqa: F401  (the server; imported here so the display does not need it)
        except ImportError:
            raise WebViewError(
                "web: the web view needs aiohttp (pip install aiohttp, or reinstall spikereveal-rt)"
            ) from None
        self._thread = threading.Thread(target=self._serve, name="web-view", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise WebViewError(
                f"web: the server on {self.host}:{self.port} did not start within {timeout_s} s"
            )
        if self._error is not None:
            raise WebViewError(f"web: cannot listen on {self.host}:{self.port} ({self._error})")
        # A warning, so that it shows without -v: the user has to know where to point a browser.
        log.warning("web view at %s (open it in a browser)", self.url)
        return self.url

    def wants_frame(self, now_s: float | None = None) -> bool:
        """Whether a new frame would reach anyone: at the stream's pace while a viewer is connected,
        else every :data:`IDLE_FRAME_S` (so that ``/frame.jpg`` is never staler than that).

        The display plays K x the RGB rate (150 frames/s for a 30 fps camera) but a viewer gets at
        most ``max_fps``; composing and overlaying the frames nobody is sent is the display's
        biggest cost on a small CPU, so the display asks first.
        """
        now_s = time.monotonic() if now_s is None else now_s
        interval = self.min_interval_s if self.viewers > 0 else max(self.min_interval_s, IDLE_FRAME_S)
        return now_s - self._shown_at_s >= interval

    def show(self, image: np.ndarray) -> None:
        """Make ``image`` ((H, W, 3) uint8 BGR, not changed afterwards) the frame viewers get next."""
        with self._lock:
            self._image = image
            self._version += 1
        self._shown_at_s = time.monotonic()
        self._wake()

    def report(self, info: OverlayInfo, results: int) -> None:
        """The overlay's numbers for the page; a latency point when ``results`` grew since last time."""
        now = time.monotonic() - self._t0
        stats = {k: _finite(v) for k, v in dataclasses.asdict(info).items()}
        with self._lock:
            if results > self._last_results and info.latency_last_ms is not None:
                self._point_index += 1
                self._points.append((self._point_index, round(now, 3), round(info.latency_last_ms, 3)))
            self._last_results = results
            self._stats = {
                "lines": overlay_lines(info),
                "info": stats,
                "results": results,
                "frames_sent": self.frames_sent,
                "viewers": self.viewers,
            }

    def wait_key(self, wait_ms: int) -> int:
        """A key a viewer sent within ``wait_ms`` (the window's pacing wait), or -1."""
        try:
            return self._keys.get(timeout=max(1, wait_ms) / 1000.0)
        except queue.Empty:
            return -1

    @property
    def closed(self) -> bool:
        """A page closing is not the end of the stream (another viewer may come): never closed."""
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the server (viewers' streams end); idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._stop_event.set)
            thread.join(timeout_s)
            log.info("web view: %d frames sent to %d viewer(s)", self.frames_sent, self.viewers_total)
        self._thread = None

    def stats_json(self) -> dict[str, Any]:
        """What ``/stats`` serves: the overlay numbers and every latency point kept."""
        with self._lock:
            return {**self._stats, "latency": [list(p[1:]) for p in self._points]}

    # -- the server's side (its thread and event loop) ------------------------------------------
    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody to wake
                loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start(); a thread's exception would vanish
            self._error = exc
            self._ready.set()
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        from aiohttp import web

        self._changed = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._encoding = asyncio.Lock()
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/stream.mjpg", self._stream),
                web.get("/frame.jpg", self._frame),
                web.get("/stats", self._stats_handler),
                web.get("/events", self._events),
                web.post("/key", self._key),
            ]
        )
        # shutdown_timeout: endless streams are cancelled at close instead of being waited for.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.port = int(port)
            self.url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stop_event.wait()
        finally:
            self._notify()  # streams waiting for a frame see the stop and end
            await runner.cleanup()

    async def _next_frame(self, seen: int) -> tuple[int, bytes] | None:
        """The newest frame's (version, JPEG) once it is newer than ``seen``; None when stopping."""
        while True:
            if self._stop_event.is_set():
                return None
            with self._lock:
                version, image = self._version, self._image
            if image is not None and version > seen:
                break
            await self._changed.wait()
        async with self._encoding:  # one encode per frame, however many viewers want it
            if self._jpeg[0] != version:
                jpeg = await asyncio.get_running_loop().run_in_executor(None, encode_jpeg, image)
                self._jpeg = (version, jpeg)
            return self._jpeg

    async def _page(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(text=PAGE_HTML.replace("{{TITLE}}", self.title), content_type="text/html")

    async def _stream(self, request: Any) -> Any:
        from aiohttp import web

        resp = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
            }
        )
        await resp.prepare(request)
        self.viewers += 1
        self.viewers_total += 1
        seen, last_sent = 0, -math.inf
        try:
            while (frame := await self._next_frame(seen)) is not None:
                wait_s = last_sent + self.min_interval_s - time.monotonic()
                if wait_s > 0:  # paced: then take whatever is newest by then
                    await asyncio.sleep(wait_s)
                    frame = await self._next_frame(frame[0] - 1)
                    if frame is None:
                        break
                seen, jpeg = frame
                await resp.write(mjpeg_part(jpeg))
                last_sent = time.monotonic()
                self.frames_sent += 1
        except ConnectionError:  # the viewer went away: its stream ends, the node goes on
            pass
        finally:
            self.viewers -= 1
        return resp

    async def _frame(self, request: Any) -> Any:
        from aiohttp import web

        frame = await self._next_frame(0)
        if frame is None:
            raise web.HTTPServiceUnavailable(text="stopping")
        return web.Response(body=frame[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _stats_handler(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.stats_json(), headers={"Cache-Control": "no-store"})

    async def _events(self, request: Any) -> Any:
        from aiohttp import web

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await resp.prepare(request)
        sent_point = 0
        try:
            while not self._stop_event.is_set():
                with self._lock:
                    points = [list(p[1:]) for p in self._points if p[0] > sent_point]
                    if self._points:
                        sent_point = self._points[-1][0]
                    payload = {**self._stats, "latency": points}
                await resp.write(f"data: {json.dumps(payload)}\n\n".encode())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), 1.0 / EVENTS_HZ)
        except ConnectionError:
            pass
        return resp

    async def _key(self, request: Any) -> Any:
        from aiohttp import web

        key = (await request.text()).strip().lower() or " "
        if key not in WEB_KEYS:
            raise web.HTTPBadRequest(text=f"key: got {key!r}, expected one of space, n, s")
        self._keys.put(WEB_KEYS[key])
        return web.Response(text="ok")


#: The page: the MJPEG stream parsed by a fetch() reader (so frames can be counted), the overlay's
#: numbers as text, a latency plot on a <canvas>, and the window's keys as buttons. No external files.
PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { background:#181818; color:#ddd; font:14px/1.4 system-ui, sans-serif; margin:16px; }
 h1 { font-size:16px; font-weight:600; margin:0 0 8px; }
 #view { width:min(100%, 1100px); background:#000; display:block; min-height:60px; }
 .row { display:flex; gap:16px; flex-wrap:wrap; margin-top:12px; align-items:flex-start; }
 pre { margin:0; font:13px/1.5 ui-monospace, monospace; background:#222; padding:8px 10px; }
 canvas { background:#111; border:1px solid #333; }
 button { background:#333; color:#ddd; border:1px solid #555; padding:4px 10px; cursor:pointer; }
 .muted { color:#888; }
</style></head>
<body>
<h1>{{TITLE}}</h1>
<img id="view" alt="live view: blurry input beside the sharp sequence">
<div class="row">
 <pre id="overlay">waiting for the first stats...</pre>
 <div><canvas id="plot" width="520" height="180"></canvas>
  <div class="muted">end-to-end latency (ms) per result, last <span id="npoints">0</span> points</div></div>
</div>
<div class="row">
 <button data-key="space">pause / play (space)</button>
 <button data-key="n">step (n)</button>
 <button data-key="s">snapshot (s)</button>
 <span class="muted">frames <span id="frames">0</span> &middot; results <span id="results">0</span>
 &middot; stats updates <span id="updates">0</span> &middot; stream <span id="state">connecting</span></span>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const points = [];
let frames = 0, updates = 0, lastUrl = null;

function indexOf(buf, seq, from) {
  outer: for (let i = from; i <= buf.length - seq.length; i++) {
    for (let j = 0; j < seq.length; j++) if (buf[i + j] !== seq[j]) continue outer;
    return i;
  }
  return -1;
}

function showJpeg(bytes) {
  const url = URL.createObjectURL(new Blob([bytes], {type: "image/jpeg"}));
  $("view").src = url;
  if (lastUrl) URL.revokeObjectURL(lastUrl);
  lastUrl = url;
  frames += 1;
  $("frames").textContent = String(frames);
}

async function stream() {
  const sep = new TextEncoder().encode("\\r\\n\\r\\n");
  for (;;) {
    try {
      const resp = await fetch("stream.mjpg", {cache: "no-store"});
      const reader = resp.body.getReader();
      $("state").textContent = "open";
      let buf = new Uint8Array(0);
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf); joined.set(value, buf.length); buf = joined;
        for (;;) {
          const end = indexOf(buf, sep, 0);
          if (end < 0) break;
          const head = new TextDecoder().decode(buf.subarray(0, end));
          const m = /content-length:\\s*(\\d+)/i.exec(head);
          if (!m) { buf = buf.slice(end + 4); continue; }
          const n = parseInt(m[1], 10), start = end + 4;
          if (buf.length < start + n) break;
          showJpeg(buf.slice(start, start + n));
          buf = buf.slice(start + n);
        }
      }
    } catch (e) { /* the node restarted or stopped: try again */ }
    $("state").textContent = "reconnecting";
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function drawPlot() {
  const c = $("plot"), g = c.getContext("2d"), w = c.width, h = c.height, pad = 34;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#444"; g.fillStyle = "#888"; g.font = "11px monospace";
  g.strokeRect(pad, 6, w - pad - 6, h - pad);
  $("npoints").textContent = String(points.length);
  if (points.length === 0) { g.fillText("no latency samples yet", pad + 8, h / 2); return; }
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1e-3);
  const ymax = Math.max(1, ...points.map((p) => p[1])) * 1.1;
  const x = (t) => pad + (w - pad - 6) * (t - t0) / (t1 - t0);
  const y = (v) => 6 + (h - pad) * (1 - v / ymax);
  for (const f of [0, 0.5, 1]) {
    g.fillText((ymax * f).toFixed(0), 2, y(ymax * f) + 4);
  }
  g.fillText((t1 - t0).toFixed(1) + " s", w - 50, h - 8);
  g.strokeStyle = "#4fc3f7"; g.lineWidth = 1.5; g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
}

function onStats(s) {
  updates += 1;
  $("updates").textContent = String(updates);
  $("overlay").textContent = (s.lines || []).join("\\n") || "waiting for results";
  $("results").textContent = String(s.results || 0);
  for (const p of s.latency || []) points.push(p);
  while (points.length > 600) points.shift();
  drawPlot();
}

function events() {
  const es = new EventSource("events");
  es.onmessage = (e) => onStats(JSON.parse(e.data));
}

for (const b of document.querySelectorAll("button[data-key]")) {
  b.addEventListener("click", () => fetch("key", {method: "POST", body: b.dataset.key}));
}
document.addEventListener("keydown", (e) => {
  const k = e.key === " " ? "space" : e.key.toLowerCase();
  if (["space", "n", ".", "s"].includes(k)) { fetch("key", {method: "POST", body: k}); e.preventDefault(); }
});
drawPlot();
stream();
events();
</script>
</body></html>
"""
