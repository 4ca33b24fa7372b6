"""`make ui`: the Dagster UI and prodvid's media server together, on this machine only.

    python -m prodvid_dagster.ui [--port 3000] [--media-port 3001] [--store DIR] [--project .]

1. `prodvid serve` for the store on 127.0.0.1:<media port>: the review page and the files the links open;
2. `dg dev` (the Dagster webserver and daemon) on 127.0.0.1:<port>, with `PRODVID_MEDIA_URL` set to the media
   server, so every hero image, contact sheet and video of a local store links there;
3. Ctrl-C (or SIGTERM) stops both, by their pids: `dg dev` gets one SIGINT (a second one would cut its
   own shutdown short, so each child runs in a process group of its own, out of reach of the terminal's
   Ctrl-C) and the media server a SIGTERM; then what each left in its process group gets SIGTERM, and
   whatever still runs after `STOP_SECONDS` SIGKILL.
   If either exits by itself, the other is stopped too.

No dagster import: this only starts and stops processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "STOP_SECONDS"]

STOP_SECONDS = 20  # dagster dev waits for its webserver and daemon to stop; seen to take 10 s and more


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make ui", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("DAGSTER_PORT", 3000)), help="the Dagster UI's (3000)"
    )
    parser.add_argument(
        "--media-port",
        type=int,
        default=int(os.environ.get("PRODVID_MEDIA_PORT", 3001)),
        help="the media server's and review page's (3001)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("PRODVID_STORE") or "./prodvid-data",
        help="a folder or s3://bucket/prefix (default $PRODVID_STORE or ./prodvid-data)",
    )
    parser.add_argument(
        "--project", default=".", help="the dg project (the folder of its pyproject.toml) that dg dev loads"
    )
    return parser


def dev_command(project: str) -> list[str]:
    """`dg dev` for the project's code location: the Dagster webserver and daemon (it takes `--host` and
    `--port`). Through this Python, so it runs the same venv's dagster whatever is first on PATH."""
    return [sys.executable, "-m", "dagster_dg_cli.cli", "dev", "--target-path", project]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _finish(proc: subprocess.Popen, deadline: float) -> None:
    """Wait for `proc` (already signalled), then for the rest of its process group: what it leaves behind
    (dagster dev's code servers would wait for a heartbeat timeout, a run worker would run on) gets SIGTERM,
    and whatever is left at `deadline` SIGKILL. The group's id is `proc`'s pid, which the kernel does not
    reuse while the group has members, so no other process is ever signalled."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stopping = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    # Before the children start: they inherit an ignored SIGINT (ours, when `make ui` runs in the background
    # of a script) but not a handler, which exec resets to the default.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    store = args.store if args.store.startswith("s3://") else str(Path(args.store).resolve())
    media_url = os.environ.get("PRODVID_MEDIA_URL") or f"http://127.0.0.1:{args.media_port}"
    env = {**os.environ, "PRODVID_STORE": store, "PRODVID_MEDIA_URL": media_url}

    # 1-2. the media server, then dagster dev, each in a process group of its own
    media = subprocess.Popen(
        [sys.executable, "-m", "prodvid_core.cli", "serve", "--store", store, "--host", "127.0.0.1",
         "--port", str(args.media_port)],
        env=env, start_new_session=True,
    )  # fmt: skip
    dev = subprocess.Popen(
        [*dev_command(args.project), "--host", "127.0.0.1", "--port", str(args.port)],
        env=env, start_new_session=True,
    )  # fmt: skip
    print(
        f"prodvid ui: Dagster at http://127.0.0.1:{args.port}, review page and media at {media_url}/ "
        f"(store {store}); Ctrl-C stops both.",
        flush=True,
    )

    # 3. until Ctrl-C, SIGTERM, or one of them ends; then one signal each, and their process groups
    while not stopping and media.poll() is None and dev.poll() is None:
        time.sleep(0.2)
    deadline = time.monotonic() + STOP_SECONDS
    for proc, sig in ((dev, signal.SIGINT), (media, signal.SIGTERM)):
        if proc.poll() is None:
            proc.send_signal(sig)
    _finish(media, deadline)
    _finish(dev, deadline)
    print("prodvid ui: stopped.", flush=True)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
