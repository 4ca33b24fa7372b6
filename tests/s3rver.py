"""s3rver: a real S3-protocol server (npm) that keeps its objects in a folder, so it can be killed and started
again with nothing lost, the way a MinIO or an S3 gateway restarts. moto's server (`s3_server.py`) keeps them
in memory.

`tests/servers/package.json` and its `package-lock.json` pin it; `install()` runs `npm ci` there into
`tests/servers/node_modules/` (git-ignored) the first time. Where node or npm is missing the tests that need
it skip, or fail where PRODVID_REQUIRE_S3RVER is set (CI).

    server = S3rver(folder)        # started on 127.0.0.1, a free port it reports
    server.kill()                  # SIGKILL, by pid: what a crash or an OOM kill does
    server.start()                 # the same port and folder: every object stored before is there again
    server.stop()

s3rver accepts only its own credentials, `S3RVER_ENV`. PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["S3rver", "install", "S3RVER_ENV", "BUCKET"]

SERVERS = Path(__file__).parent / "servers"
BIN = SERVERS / "node_modules" / ".bin" / "s3rver"
BUCKET = "prodvid"
S3RVER_ENV = {
    "AWS_ACCESS_KEY_ID": "S3RVER",
    "AWS_SECRET_ACCESS_KEY": "S3RVER",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_LISTENING = re.compile(rb"S3rver listening on 127\.0\.0\.1:(\d+)")


def install() -> Path:
    """The s3rver executable, installed by `npm ci` from the lock file if it is not yet; skips the test (or
    fails it, with PRODVID_REQUIRE_S3RVER set) with the reason where it cannot be."""
    if BIN.exists():
        return BIN
    npm = shutil.which("npm")
    why = "npm is not installed" if npm is None or shutil.which("node") is None else None
    if why is None:
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SERVERS,
            capture_output=True,
            text=True,
            timeout=300,
        )
        why = f"`npm ci` in {SERVERS} failed: {proc.stderr.strip()[-2000:]}" if proc.returncode else None
    if why is None and BIN.exists():
        return BIN
    why = why or f"`npm ci` did not install {BIN}"
    if os.environ.get("PRODVID_REQUIRE_S3RVER"):
        pytest.fail(f"s3rver is required (PRODVID_REQUIRE_S3RVER is set) but cannot run: {why}")
    pytest.skip(f"s3rver cannot run: {why}")


class S3rver:
    """One s3rver process on 127.0.0.1 over `folder`, with bucket `BUCKET`; restartable on the same port."""

    def __init__(self, folder: Path, *, timeout: float = 30.0):
        self.folder, self.timeout = Path(folder), timeout
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = 0  # the first start binds a free port; later starts bind the same one
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        atexit.register(self.stop)
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server (again) and wait until it listens."""
        log = Path(tempfile.mkstemp(prefix="s3rver-", suffix=".log")[1])
        cmd = [str(install()), "-d", str(self.folder), "-a", "127.0.0.1", "-p", str(self.port)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--configure-bucket", BUCKET], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            self.port = self._wait(log)
        finally:
            log.unlink(missing_ok=True)
        self.starts += 1

    def _wait(self, log: Path) -> int:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(log.read_bytes())
            if match:
                return int(match[1])
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        text = log.read_text(errors="replace")[-4000:]
        self.stop()
        raise RuntimeError(f"s3rver did not start within {self.timeout}s (exit {self.proc.poll()}):\n{text}")

    def kill(self) -> None:
        """SIGKILL the server by its pid: no chance to finish a request or flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every stored object of `BUCKET` under `prefix`, read from the folder itself: `<key>._S3rver_object`
        files next to their metadata."""
        root = self.folder / BUCKET
        suffix = "._S3rver_object"
        return {
            key: path.read_bytes()
            for path in sorted(root.rglob(f"*{suffix}"))
            if (key := path.relative_to(root).as_posix()[: -len(suffix)]).startswith(prefix)
        }
