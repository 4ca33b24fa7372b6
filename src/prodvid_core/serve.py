"""`prodvid serve`: a small read-only web server for a store's outputs, and a review page of its SKUs.

    prodvid serve --store prodvid-data --host 127.0.0.1 --port 3001

- `GET /<key>` answers a file of the store's outputs (`media.OUTPUT_PREFIXES`: `hero_image/`, `frames/`,
  `video/`, ...) with its type (`image/png`, `video/mp4`, `application/json`) and honours a `Range` header
  (206 Partial Content), which a `<video>` element needs to seek. Nothing else is served: not `inbox/` (the
  team's uploads), not the sensor's state, nothing outside the store. A key with an empty, `.` or `..`
  segment (`../`, `%2e%2e/`, `//etc/passwd`), a NUL, a name starting with `.` (a write's temp file), or a
  path that leads (through a symbolic link) outside the store or into anything but an output folder is a
  404, as is a missing file.
- `GET /` is the review page: every SKU with its hero image, a video player, the prompt, the format and its
  status (made, hero image only, or its inbox state: waiting for its brief, ready, rejected and why).
- For an S3 store a file request is answered with a redirect to a presigned URL (the bytes never pass
  through this server), and the review page links presigned URLs directly.

Why the standard library's `http.server` and no web framework: the server answers two kinds of GET,
read-only, for a few people on one machine (loopback by default). `ThreadingHTTPServer` serves several
browsers at once, and range requests are a few lines; a framework would add a dependency, its updates and
its attack surface for no feature used here. Put a real web server (or S3 with presigned URLs) in front for
anything bigger.
"""

from __future__ import annotations

import html
import mimetypes
import re
import sys
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from prodvid_core import formats, inbox, layout, media
from prodvid_core.artifacts import read_json
from prodvid_core.storage import LocalStore, ObjectStore, S3Store

__all__ = ["CONTENT_TYPES", "make_server", "serve", "resolve", "parse_range", "review_page"]

CONTENT_TYPES = {
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".json": "application/json",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def resolve(store: LocalStore, url_path: str) -> Path | None:
    """The file a request path names, or None when it is not one of the store's output files.

    1. The path is percent-decoded once; it must be a key of plain segments (no empty, `.` or `..` one,
       so no `../`, `%2e%2e`, `//` or absolute path) without a NUL, and no segment may start with `.`.
    2. The key must start with an output prefix.
    3. The file, with every symbolic link resolved, must still lie under an output folder of the store
       (a link to `/etc/passwd` or into `inbox/` is refused), and be a regular file.
    """
    key = unquote(url_path.removeprefix("/"), errors="strict")
    parts = key.split("/")
    if "\x00" in key or "\\" in key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    if not key.startswith(media.OUTPUT_PREFIXES):
        return None
    try:
        target = (store.root / key).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return None
    if not target.is_relative_to(store.root):
        return None
    inside = target.relative_to(store.root).as_posix()
    if not inside.startswith(media.OUTPUT_PREFIXES) or not target.is_file():
        return None
    return target


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """The byte range `(first, last)` (inclusive) a `Range` header asks for, None for the whole file (no
    header, or one this server does not honour: several ranges, another unit; RFC 9110 lets a server send
    the whole file then), or `"unsatisfiable"` (416) for a range outside the file."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # `bytes=-N`: the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return (max(size - n, 0), size - 1) if size else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


def _format_name(size: list[int] | None) -> str:
    if not size:
        return "?"
    named = [name for name, wh in formats.PRESETS.items() if list(wh) == list(size)]
    return f"{named[0]} ({size[0]}x{size[1]})" if named else f"{size[0]}x{size[1]}"


def _skus(store: ObjectStore, folder: str, suffix: str) -> set[str]:
    keys = store.list(folder)
    return {k[len(folder) : -len(suffix)] for k in keys if k.endswith(suffix) and "/" not in k[len(folder) :]}


def review_rows(store: ObjectStore) -> Iterator[dict]:
    """One row per SKU that has outputs or an inbox entry: its links, prompt, format and status."""
    scan = inbox.scan(store)
    heroes = _skus(store, "hero_image/", ".png")
    videos = _skus(store, "video/", ".mp4")
    rejected = {}
    for key, why in scan.rejected.items():
        stem = key[len("inbox/") :].rpartition(".")[0]
        rejected.setdefault(stem, why)
    states = {sku: "ready (not made yet)" for sku in [*scan.ready, *scan.unchanged]}
    states.update({sku: "waiting for its brief" for sku in scan.waiting})
    states.update({sku: f"rejected: {why}" for sku, why in rejected.items()})
    for sku in sorted(heroes | videos | set(states)):
        hero = read_json(store, layout.hero_json(sku)) if sku in heroes else None
        if sku in videos:
            status = "made"
        elif sku in heroes:
            status = "hero image only"
        else:
            status = states[sku]
        if sku in rejected and status == "made":
            status = f"made; inbox entry rejected: {rejected[sku]}"
        yield {
            "sku": sku,
            "hero": layout.hero_png(sku) if sku in heroes else None,
            "video": layout.video_mp4(sku) if sku in videos else None,
            "prompt": (hero or {}).get("prompt", ""),
            "format": _format_name((hero or {}).get("size")) if hero else "",
            "status": status,
        }


def review_page(store: ObjectStore, link) -> str:
    """The review page's HTML; `link(key)` is the URL of an output (relative, or presigned for S3)."""
    rows = []
    for row in review_rows(store):
        e = {k: html.escape(str(v or "")) for k, v in row.items()}
        hero = (
            f'<a href="{html.escape(link(row["hero"]))}"><img class="hero" alt="hero image of {e["sku"]}" '
            f'src="{html.escape(link(row["hero"]))}"></a>'
            if row["hero"]
            else ""
        )
        video = (
            f'<video controls muted loop preload="metadata" src="{html.escape(link(row["video"]))}"></video>'
            if row["video"]
            else ""
        )
        rows.append(
            f'<tr id="sku-{e["sku"]}"><td class="sku">{e["sku"]}</td><td>{hero}</td><td>{video}</td>'
            f'<td class="prompt">{e["prompt"]}</td><td class="format">{e["format"]}</td>'
            f'<td class="status">{e["status"]}</td></tr>'
        )
    where = html.escape(media.inbox_location(store))
    body = "\n".join(rows) or f'<tr><td colspan="6">Nothing yet: drop photos and briefs in {where}</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>prodvid review</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }} td, th {{ padding: .4em; vertical-align: top;
text-align: left; border-bottom: 1px solid #ddd; }} img.hero, video {{ max-width: 320px; max-height: 360px;
height: auto; }} .prompt {{ max-width: 24em; }}
</style></head><body>
<h1>prodvid review</h1>
<p>Store inbox: <code>{where}</code>. Click a hero image for its full size.</p>
<table><thead><tr><th>SKU</th><th>hero image</th><th>video</th><th>prompt</th><th>format</th>
<th>status</th></tr></thead><tbody>
{body}
</tbody></table></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    """GET and HEAD of the review page and of output files; every other method is answered 501."""

    store: ObjectStore  # set on the subclass `make_server` builds
    server_version = "prodvid-serve"
    expires: int = media.DEFAULT_EXPIRES

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/":
            return self._page(body=body)
        if isinstance(self.store, S3Store):
            return self._redirect(path)
        try:
            target = resolve(self.store, path)
        except UnicodeDecodeError:
            target = None
        if target is None:
            return self._plain(HTTPStatus.NOT_FOUND, "not found", body=body)
        self._file(target, body=body)

    def _page(self, *, body: bool) -> None:
        if isinstance(self.store, S3Store):
            page = review_page(self.store, lambda key: media.media_url(self.store, key, expires=self.expires))
        else:
            page = review_page(self.store, lambda key: f"/{key}")
        data = page.encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _redirect(self, path: str) -> None:
        key = unquote(path.lstrip("/"))
        parts = key.split("/")
        if not key.startswith(media.OUTPUT_PREFIXES) or any(p in ("", ".", "..") for p in parts):
            return self._plain(HTTPStatus.NOT_FOUND, "not found", body=True)
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", media.media_url(self.store, key, expires=self.expires))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _file(self, target: Path, *, body: bool) -> None:
        size = target.stat().st_size
        wanted = parse_range(self.headers.get("Range"), size)
        if wanted == "unsatisfiable":
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = wanted if wanted else (0, size - 1)
        length = max(last - first + 1, 0)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if wanted else HTTPStatus.OK)
        kind = CONTENT_TYPES.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0]
        self.send_header("Content-Type", kind or "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")  # a re-run replaces the file under the same name
        if wanted:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if not body or not length:
            return
        with open(target, "rb") as f:
            f.seek(first)
            left = length
            try:
                while left:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):  # a <video> that seeks drops its request
                pass

    def _plain(self, status: HTTPStatus, text: str, *, body: bool) -> None:
        data = f"{text}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        sys.stderr.write(f"prodvid serve: {self.address_string()} {format % args}\n")


def make_server(
    store: ObjectStore, host: str = "127.0.0.1", port: int = 0, *, expires: int = media.DEFAULT_EXPIRES
) -> ThreadingHTTPServer:
    """A server for `store` bound to `host:port` (port 0: a free one, see `server.server_address`)."""
    handler = type("Handler", (_Handler,), {"store": store, "expires": media.check_expires(expires)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(store: ObjectStore, host: str = "127.0.0.1", port: int = 3001, **kwargs) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM); prints the URL first, so a script can wait for it."""
    server = make_server(store, host, port, **kwargs)
    bound_host, bound_port = server.server_address[:2]
    print(f"prodvid serve: {store!r} at http://{bound_host}:{bound_port}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
