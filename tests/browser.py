"""Headless Chromium opens media URLs the way a person's browser does, and reports what it saw.

`probe_media(image_url, video_url)` writes a small page that shows the image and plays the video (muted, so
autoplay is allowed), and posts what the elements say (the image's natural size, the video's readyState and
currentTime before and after it played, a seek) to a one-shot HTTP server of this module on 127.0.0.1.
Chromium runs in real time (no virtual time: media playback follows the wall clock) until the report arrives,
then it is stopped by its pid.

CI installs Debian's chromium and sets PRODVID_REQUIRE_BROWSER=1, so there a missing browser fails the test;
elsewhere the test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

__all__ = ["CHROMIUM", "require_chromium", "probe_media", "CHROMIUM_FLAGS"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
]  # fmt: skip

_PAGE = """<!doctype html><html><body>
<img id="image" src="{image}">
<video id="video" muted playsinline loop preload="auto" src="{video}"></video>
<script>
const out = {{}}, image = document.getElementById("image"), video = document.getElementById("video");
let sent = false;
function send() {{
  if (sent) return; sent = true;
  fetch("{report}", {{method: "POST", mode: "no-cors", body: JSON.stringify(out)}});
}}
function finish() {{
  if (("naturalWidth" in out || out.imageError) && ("seeked" in out || out.videoError)) send();
}}
image.onload = () => {{
  out.naturalWidth = image.naturalWidth; out.naturalHeight = image.naturalHeight; finish();
}};
image.onerror = () => {{ out.imageError = true; finish(); }};
video.onerror = () => {{
  out.videoError = video.error ? video.error.code + " " + video.error.message : "?"; send();
}};
video.addEventListener("loadeddata", () => {{
  out.readyState = video.readyState; out.startTime = video.currentTime; out.duration = video.duration;
  out.canPlayH264 = video.canPlayType('video/mp4; codecs="avc1.42E01E"');
  video.play().catch(e => {{ out.playError = String(e); send(); }});
}});
video.addEventListener("timeupdate", () => {{
  if (!("playedTo" in out) && video.currentTime > out.startTime) {{
    out.playedTo = video.currentTime; out.readyStateWhilePlaying = video.readyState;
    video.pause(); video.currentTime = video.duration / 2;  // a seek: a Range request for the middle
  }}
}});
video.addEventListener("seeked", () => {{
  if ("playedTo" in out) {{ out.seeked = video.currentTime; finish(); }}
}});
setTimeout(() => {{ out.timedOut = true; send(); }}, {timeout_ms});
</script></body></html>
"""


def require_chromium() -> str:
    """The browser's path; without one, fail where PRODVID_REQUIRE_BROWSER is set (CI), else skip."""
    if CHROMIUM is None:
        assert not os.environ.get("PRODVID_REQUIRE_BROWSER"), "chromium is required but not installed"
        pytest.skip("chromium is not installed")
    return CHROMIUM


def probe_media(image_url: str, video_url: str, *, timeout: float = 60) -> dict:
    """What Chromium reports for the image and the video (keys: naturalWidth, naturalHeight, readyState,
    startTime, playedTo, readyStateWhilePlaying, seeked, duration, canPlayH264, or imageError/videoError/
    playError/timedOut)."""
    browser = require_chromium()
    reports: list[dict] = []
    arrived = threading.Event()

    class Report(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            reports.append(json.loads(body))
            self.send_response(204)
            self.end_headers()
            arrived.set()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Report)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    report = f"http://127.0.0.1:{server.server_address[1]}/report"
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(
            _PAGE.format(
                image=image_url, video=video_url, report=report, timeout_ms=int(timeout * 1000) - 5000
            )
        )
        proc = subprocess.Popen(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", page.as_uri()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and GPU processes share its process group
        )
        try:
            arrived.wait(timeout)
        finally:
            server.shutdown()
            server.server_close()
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert reports, f"chromium reported nothing in {timeout} s"
    return reports[0]
