"""A throwaway PostgreSQL server for tests: `initdb` into a temp folder, `postgres` on 127.0.0.1, a free port.

The Dagster instance in production keeps its runs, event logs and sensor state in Postgres
(deploy/dagster.yaml); this starts a real server so tests read and write through the same dagster-postgres
storage classes, with a password checked by the server (SCRAM), not `trust`. Use it from a fixture:

    server, stop = start_postgres(tmp_path)
    try:
        ...  # server.env: the DAGSTER_PG_* variables deploy/dagster.yaml reads
    finally:
        stop()

The server binaries come from PATH or Debian's `/usr/lib/postgresql/<version>/bin` (package postgresql);
`find_postgres()` says why they cannot be used when they cannot. Postgres refuses to run as root: as root the
server runs as the `postgres` user that Debian's package creates, in a folder of its own under /tmp (pytest's
temp root is private to root), removed by `stop()`.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgServer", "find_postgres", "start_postgres"]

_USER = "prodvid"
_PASSWORD = "prodvid-test-password"
_DB = "dagster"
# Durability is worthless for a throwaway server and fsync is most of initdb's and each commit's time.
_FAST = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    db: str
    pid: int

    @property
    def env(self) -> dict[str, str]:
        """The connection as deploy/dagster.yaml reads it."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }


def find_postgres() -> tuple[Path | None, str]:
    """The folder holding `initdb` and `postgres`, or None and the reason they cannot be used here."""
    candidates = [Path(p).resolve().parent for p in [shutil.which("initdb")] if p]
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(installed, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)[::-1]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            break
    else:
        return None, "PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root, and there is no 'postgres' user for the server to run as"
    return bindir, ""


def start_postgres(*, timeout: float = 30.0) -> tuple[PgServer, Callable[[], None]]:
    """Start a fresh server with database `dagster` and return `(server, stop)` once it accepts logins.

    `stop()` shuts the server down by its pid (a fast shutdown, then SIGKILL) and removes its folder. A failed
    start raises RuntimeError with the end of the server's log.
    """
    import psycopg2

    bindir, why = find_postgres()
    if bindir is None:
        raise RuntimeError(why)
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="prodvid-pg-"))
    proc: subprocess.Popen | None = None

    def stop() -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: roll back open transactions, then exit
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(stop)  # a crashed session leaves no server behind
    try:
        # 1. A cluster whose superuser logs in with a password
        (root / "socket").mkdir()
        (root / "password").write_text(_PASSWORD + "\n")
        if as_user:
            for path in (root, root / "socket", root / "password"):
                os.chown(path, as_user["user"], as_user["group"])
        initdb = [str(bindir / "initdb"), "-D", str(root / "data"), "-EUTF8", "--no-locale"]
        initdb += ["-U", _USER, "--auth=scram-sha-256", "--pwfile", str(root / "password")]
        initdb += ["--no-sync", "--no-instructions"]
        subprocess.run(initdb, cwd=root, capture_output=True, check=True, timeout=timeout, **as_user)

        # 2. The server on 127.0.0.1 and a free port (its socket file inside our folder, never /var/run)
        port = _free_port()
        log = root / "postgres.log"
        with open(log, "wb") as out:
            command = [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port)]
            command += ["-c", "listen_addresses=127.0.0.1", "-k", str(root / "socket"), *_FAST]
            proc = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, **as_user)

        # 3. Wait until it takes a login, then make the database
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg2.connect(
                    host="127.0.0.1", port=port, user=_USER, password=_PASSWORD, dbname="postgres",
                    connect_timeout=2,
                )  # fmt: skip
                break
            except psycopg2.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace")[-4000:]
                    raise RuntimeError(f"postgres did not start (exit code {proc.poll()}):\n{text}") from None
                time.sleep(0.05)
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            conn.cursor().execute(f"CREATE DATABASE {_DB}")
        finally:
            conn.close()
        return PgServer("127.0.0.1", port, _USER, _PASSWORD, _DB, proc.pid), stop
    except subprocess.CalledProcessError as err:
        stop()
        raise RuntimeError(f"initdb failed:\n{err.stdout.decode()}{err.stderr.decode()}") from err
    except BaseException:
        stop()
        raise


def _run_as() -> dict:
    """Popen arguments that drop root to the `postgres` user; none when not root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
