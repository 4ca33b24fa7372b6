"""A real S3-protocol server for tests and benchmarks: moto's standalone server on 127.0.0.1.

All traffic is real HTTP through boto3, so `S3Store` is tested the way it talks to MinIO, R2 or AWS (no
in-process mocks). Use from pytest (register this module in `tests/conftest.py` with
`pytest_plugins = ["s3_server"]`) or from a script:

    endpoint, stop = start_s3_server()
    try:
        ...  # S3Store("bucket", endpoint_url=endpoint) after creating "bucket"
    finally:
        stop()

The server needs no credentials, but boto3 signs every request, so the fixtures set dummy `AWS_*` variables
(and hide `~/.aws`) for the session; a real account can never be reached by accident.

PYTEST_DONT_REWRITE: this module has no asserts and test modules import it directly, before pytest could
register it as a plugin; the marker keeps pytest from warning that it cannot rewrite it.
"""

from __future__ import annotations

import atexit
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prodvid_core.storage import S3Store

__all__ = ["start_s3_server", "s3_endpoint", "s3_store", "DUMMY_AWS_ENV"]

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "prodvid-test-key",
    "AWS_SECRET_ACCESS_KEY": "prodvid-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

_ANNOUNCEMENT = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


def start_s3_server(
    *, timeout: float = 30.0, env: dict[str, str] | None = None
) -> tuple[str, Callable[[], None]]:
    """Start moto's S3 server on 127.0.0.1 and return `(endpoint_url, stop)` once it answers HTTP.

    The server binds port 0 and we read the port it announces, so parallel test runs never race for a port.
    Its log goes to a temp file (a pipe nobody drains would block it); a failed start shows the log.

    Args:
        env: extra environment for the server process, e.g. `{"INITIAL_NO_AUTH_ACTION_COUNT": "0"}` to make
            moto check credentials.
    """
    log_path = Path(tempfile.mkstemp(prefix="moto-server-", suffix=".log")[1])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_path.unlink(missing_ok=True)

    atexit.register(stop)  # a script that crashes before calling stop() leaves no server behind
    try:
        return _wait_until_up(proc, log_path, timeout), stop
    except BaseException:
        stop()
        raise


def _wait_until_up(proc: subprocess.Popen, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _ANNOUNCEMENT.search(log_path.read_bytes())
        if match and _answers_http(int(match[1])):
            return f"http://127.0.0.1:{int(match[1])}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    log = log_path.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"moto S3 server did not start within {timeout}s (exit code {proc.poll()}):\n{log}")


def _answers_http(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse()  # any status will do: with auth on, moto answers an unsigned GET with 500
        return True
    except OSError:
        return False
    finally:
        conn.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto server for the whole session, with dummy AWS credentials set (and restored afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in DUMMY_AWS_ENV.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        endpoint, stop = start_s3_server()
        try:
            yield endpoint
        finally:
            stop()


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3Store:
    """An `S3Store` with prefix `runs/x` on a fresh, empty bucket of its own."""
    store = S3Store(f"prodvid-test-{uuid.uuid4().hex[:12]}", "runs/x", endpoint_url=s3_endpoint)
    store.client.create_bucket(Bucket=store.bucket)
    return store
