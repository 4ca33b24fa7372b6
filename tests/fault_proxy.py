"""A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3-protocol server (moto, s3rver).

Each request draws one fate from a seeded RNG, at the given rates:

- `slowdown`: answered 503 with S3's SlowDown XML body; nothing reaches the server.
- `reset_request`: the connection is reset (RST) halfway through reading the request; nothing reaches the
  server.
- `reset_response`: the request reaches the server (a PUT is stored), then the connection is reset partway
  through the response: in its headers or its body.
- `latency`: forwarded after a pause of up to `max_latency` seconds.
- otherwise forwarded as is.

Headers are forwarded unchanged (the Host header too, so s3rver's signature check still passes). botocore's
`amz-sdk-request: attempt=N; max=M` header tells the proxy which requests are retries.

    with FaultProxy(upstream, seed=1, rates={"slowdown": 0.1, "reset_response": 0.05}) as proxy:
        ...  # S3 client with endpoint_url=proxy.url
    proxy.faults  # Counter: how many of each fault were injected

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import contextlib
import http.client
import io
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "FAULTS", "SLOWDOWN_BODY"]

FAULTS = ("slowdown", "reset_request", "reset_response", "latency")
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>prodvid-fault-proxy</RequestId></Error>"
)
_ATTEMPT = re.compile(r"attempt=(\d+)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}


class FaultProxy:
    """The proxy, serving from a thread; `close()` (or leaving the `with` block) stops it."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int,
        rates: dict[str, float],
        max_latency: float = 0.2,
        methods: tuple[str, ...] = ("GET", "PUT", "POST", "DELETE", "HEAD"),
        script: list[tuple[str | None, float]] = (),
    ) -> None:
        """`methods`: the HTTP methods that draw faults (e.g. only PUT: a store that cannot be written to).
        `script`: `(fault, where)` for the first requests of those methods, in order, before the rates
        apply; e.g. `[("reset_response", 0.9), (None, 0)]` cuts the first response 90% of the way through
        and passes the second."""
        unknown = set(rates) - set(FAULTS)
        if unknown or sum(rates.values()) > 1:
            raise ValueError(f"rates must be of {FAULTS} and sum to 1 at most, got {rates}")
        up = urlsplit(upstream)
        self.upstream = (up.hostname, up.port)
        self.rates, self.max_latency, self.methods, self.script = rates, max_latency, methods, list(script)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.retries = 0  # requests botocore marked as a retry (attempt=2 or more)
        self.max_attempt = 0
        self.faults: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()  # faults by `<kind> <method>`, e.g. "reset_response GET"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def draw(self, method: str, attempt: int) -> tuple[str | None, float]:
        """The next request's fate, and a number in [0, 1) to place it (where to cut, how long to wait)."""
        with self.lock:
            self.requests += 1
            self.retries += attempt > 1
            self.max_attempt = max(self.max_attempt, attempt)
            r, where = self.rng.random(), self.rng.random()
            if method not in self.methods:
                return None, where
            if self.script:
                kind, where = self.script.pop(0)
                if kind is not None:
                    self.faults[kind] += 1
                    self.faulted[f"{kind} {method}"] += 1
                return kind, where
            for kind in FAULTS:
                rate = self.rates.get(kind, 0.0)
                if r < rate:
                    self.faults[kind] += 1
                    self.faulted[f"{kind} {method}"] += 1
                    return kind, where
                r -= rate
            return None, where

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            match = _ATTEMPT.search(self.headers.get("amz-sdk-request", ""))
            fault, where = proxy.draw(self.command, int(match[1]) if match else 1)
            if fault == "reset_request":
                self.rfile.read(length // 2)
                return self._reset()
            body = self.rfile.read(length)
            if fault == "slowdown":
                return self._send(
                    _raw(503, "Slow Down", [("Content-Type", "application/xml")], SLOWDOWN_BODY)
                )
            if fault == "latency":
                time.sleep(where * proxy.max_latency)
            raw = self._forward(body)
            if fault == "reset_response":
                self.wfile.write(raw[: int(where * len(raw))])
                return self._reset()
            self._send(raw)

        def _forward(self, body: bytes) -> bytes:
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
                if self.command == "HEAD":  # the object's length, with no body
                    headers.append(("Content-Length", resp.getheader("Content-Length", "0")))
                    return _raw(resp.status, resp.reason, headers, b"", length=False)
                return _raw(resp.status, resp.reason, headers, data)
            finally:
                conn.close()

        def _send(self, raw: bytes) -> None:
            self.wfile.write(raw)
            self.wfile.flush()

        def _reset(self) -> None:
            """Close with RST (SO_LINGER 0), as a crashed server or a dropped route does."""
            self.close_connection = True
            written, self.wfile = self.wfile, io.BytesIO()  # the base class flushes wfile afterwards
            with contextlib.suppress(OSError):
                written.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            written.close()
            self.connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler


def _raw(
    status: int, reason: str, headers: list[tuple[str, str]], body: bytes, *, length: bool = True
) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
