"""`prodvid serve` over real HTTP: only the store's outputs are served (never the inbox, the sensor's state or
anything outside the store, whatever the path trick), with their content types and byte ranges; the review
page lists every SKU; links for an S3 store are presigned URLs that a plain HTTP client opens."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from prodvid_core import layout, media
from prodvid_core.encoding import png_bytes
from prodvid_core.errors import ProdvidError
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore, S3Store
from sockets import is_loopback, listening_addresses

SECRET = b"not for the browser"
VIDEO = bytes(range(256)) * 40  # 10,240 bytes whose every range is recognizable
PROMPT = "a <b>bottle</b> on a table"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with a SKU's outputs, inbox entries, the sensor's state, and links that try to lead out of
    the outputs; `prodvid serve` on it, on a free port; (port, store, process)."""
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "secret.txt").write_bytes(SECRET)
    store = LocalStore(tmp / "store")
    store.write_bytes(layout.hero_png("S-1"), png_bytes(Image.new("RGB", (64, 48), "red")))
    store.write_bytes(layout.hero_json("S-1"), json.dumps({"prompt": PROMPT, "size": [1080, 1920]}).encode())
    store.write_bytes(layout.video_mp4("S-1"), VIDEO)
    store.write_bytes(layout.video_json("S-1"), b'{"fps": 24}')
    store.write_bytes(layout.inbox_photo("S-1", ".png"), SECRET)
    store.write_bytes(layout.inbox_photo("WAIT-2", ".png"), sample_photo_bytes(fmt="PNG", size=(40, 40)))
    store.write_bytes(layout.inbox_photo("BAD-3", ".png"), sample_photo_bytes(fmt="PNG", size=(40, 40)))
    store.write_bytes(layout.inbox_brief("BAD-3"), b'{"promt": "typo"}')
    store.write_bytes(layout.inbox_state("x"), SECRET)
    store.write_bytes("video/.S-1.mp4.0123.tmp", SECRET)
    os.symlink(tmp / "secret.txt", store.root / "hero_image" / "out.png")
    os.symlink("../inbox/S-1.png", store.root / "video" / "in.mp4")
    (store.root / "frames").mkdir()
    os.symlink("/etc", store.root / "frames" / "etc")
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), src) if p)}
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prodvid_core.cli", "serve", "--store", str(store.root), "--port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"at http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield int(found[1]), store, proc
    finally:
        proc.send_signal(signal.SIGTERM)  # how `make ui` stops it
        assert proc.wait(timeout=10) == 0, log.read_text()


def get(port: int, path: str, headers: dict | None = None, method: str = "GET"):
    """A request with `path` sent as it is (urllib would normalize `..` away); (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/inbox/S-1.png",
        "/inbox/",
        "/sensors/inbox_sensor/x.json",
        "/video/../inbox/S-1.png",
        "/video/%2e%2e/inbox/S-1.png",
        "/video/%2E%2E/%2E%2E/secret.txt",
        "/video/..%2f..%2fsecret.txt",
        "/video/%2e%2e%2f%2e%2e%2fsecret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/video//S-1.mp4",
        "/video/./S-1.mp4",
        "/hero_image/out.png",  # a symbolic link out of the store
        "/video/in.mp4",  # a symbolic link into the inbox
        "/frames/etc/passwd",  # a folder linked elsewhere
        "/video/.S-1.mp4.0123.tmp",  # a write's temp file
        "/video/S-1.mp4%00.png",
        "/video/%ff.mp4",
        "/video",
        "/video/",
        "/video/S-2.mp4",
        "/../secret.txt",
        "/hero_image\\..\\..\\secret.txt",
    ],
)
def test_serves_nothing_but_outputs(served, path):
    port, _, _ = served
    status, _, body = get(port, path)
    assert status == 404 and SECRET not in body and b"root:" not in body, (status, body[:200])


def test_content_types_and_whole_files(served):
    port, store, _ = served
    for key, kind in [
        (layout.hero_png("S-1"), "image/png"),
        (layout.video_mp4("S-1"), "video/mp4"),
        (layout.hero_json("S-1"), "application/json"),
    ]:
        status, headers, body = get(port, f"/{key}")
        assert (status, headers["Content-Type"]) == (200, kind)
        assert body == store.read_bytes(key) and headers["Content-Length"] == str(len(body))
        assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = get(port, f"/{layout.video_mp4('S-1')}", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(len(VIDEO)), b"")
    assert get(port, f"/{layout.video_mp4('S-1')}", method="POST")[0] == 501


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [("bytes=10-19", 10, 19), ("bytes=10000-", 10000, 10239), ("bytes=-5", 10235, 10239),
     ("bytes=0-0", 0, 0), ("bytes=10230-99999", 10230, 10239)],
)  # fmt: skip
def test_range_requests(served, spec, first, last):
    port, _, _ = served
    status, headers, body = get(port, "/video/S-1.mp4", {"Range": spec})
    assert status == 206 and body == VIDEO[first : last + 1]
    assert headers["Content-Range"] == f"bytes {first}-{last}/{len(VIDEO)}"
    assert headers["Content-Type"] == "video/mp4" and headers["Content-Length"] == str(last - first + 1)


def test_ranges_outside_the_file_or_not_honoured(served):
    port, _, _ = served
    for spec in ("bytes=10240-", "bytes=20-10", "bytes=-0"):
        status, headers, body = get(port, "/video/S-1.mp4", {"Range": spec})
        assert (status, headers["Content-Range"], body) == (416, f"bytes */{len(VIDEO)}", b""), spec
    for spec in ("bytes=0-1,5-6", "items=0-1", "bytes=x-y"):  # the whole file, as RFC 9110 allows
        status, _, body = get(port, "/video/S-1.mp4", {"Range": spec})
        assert (status, body) == (200, VIDEO), spec


def test_review_page_lists_skus_with_their_state(served):
    port, _, proc = served
    status, headers, body = get(port, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    row = re.search(r'<tr id="sku-S-1">.*?</tr>', page, re.S)[0]
    assert '<img class="hero"' in row and 'src="/hero_image/S-1.png"' in row
    assert '<video controls muted loop preload="metadata" src="/video/S-1.mp4">' in row
    assert "a &lt;b&gt;bottle&lt;/b&gt; on a table" in row  # the prompt, escaped
    assert "story (1080x1920)" in row and '<td class="status">made</td>' in row
    assert "waiting for its brief" in re.search(r'<tr id="sku-WAIT-2">.*?</tr>', page, re.S)[0]
    bad = re.search(r'<tr id="sku-BAD-3">.*?</tr>', page, re.S)[0]
    assert "rejected: " in bad and "promt" in bad
    assert "inbox/" not in re.sub(r"<code>.*?</code>|rejected: [^<]*", "", page)  # no link into the inbox
    # and the server listens on loopback only
    assert all(is_loopback(address) for address, _ in listening_addresses(proc.pid))


def test_media_urls(tmp_path, s3_store: S3Store):
    local = LocalStore(tmp_path)
    key = layout.video_mp4("S-1")
    assert media.media_url(local, key) is None  # no server named: no link
    assert (
        media.media_url(local, key, base_url="http://127.0.0.1:3001/")
        == "http://127.0.0.1:3001/video/S-1.mp4"
    )
    for bad in (layout.inbox_photo("S-1", ".png"), layout.inbox_state("x"), "video/../inbox/S-1.png"):
        with pytest.raises(ProdvidError):
            media.media_url(local, bad, base_url="http://127.0.0.1:3001")
    assert media.inbox_location(local) == f"{local.root}/inbox/"
    assert media.inbox_location(s3_store) == f"s3://{s3_store.bucket}/{s3_store.prefix}inbox/"

    # a presigned URL, valid for the expiry asked for, that a plain HTTP client opens
    s3_store.write_bytes(key, VIDEO)
    url = media.media_url(s3_store, key, expires=600)
    assert "X-Amz-Expires=600" in url and "X-Amz-Signature=" in url
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=3-6"})) as response:
        assert response.status == 206 and response.read() == VIDEO[3:7]
    assert "X-Amz-Expires=604800" in media.media_url(s3_store, key)  # 7 days, SigV4's longest
    with pytest.raises(ProdvidError, match="7 days"):
        media.media_url(s3_store, key, expires=media.MAX_EXPIRES + 1)


def test_an_s3_store_is_served_by_presigned_redirects(s3_store: S3Store):
    """For an S3 store the bytes never pass through the server: a file request is redirected to a presigned
    URL, and the review page links presigned URLs; the inbox stays out of reach."""
    from prodvid_core.serve import make_server

    s3_store.write_bytes(layout.video_mp4("S-1"), VIDEO)
    s3_store.write_bytes(layout.hero_png("S-1"), png_bytes(Image.new("RGB", (8, 8))))
    s3_store.write_bytes(layout.inbox_photo("S-1", ".png"), SECRET)
    server = make_server(s3_store, "127.0.0.1", 0, expires=300)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        status, headers, _ = get(port, "/video/S-1.mp4")
        assert status == 302 and "X-Amz-Expires=300" in headers["Location"]
        with urllib.request.urlopen(headers["Location"], timeout=30) as response:
            assert response.read() == VIDEO
        for path in ("/inbox/S-1.png", "/video/../inbox/S-1.png", "/video/%2e%2e/inbox/S-1.png"):
            assert get(port, path)[0] == 404, path
        page = get(port, "/")[2].decode()
        assert f"{s3_store.bucket}/{s3_store.prefix}video/S-1.mp4?" in page and "X-Amz-Signature=" in page
    finally:
        server.shutdown()
        server.server_close()
