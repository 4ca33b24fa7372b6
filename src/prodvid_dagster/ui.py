"""`make ui`: the Dagster UI and prodvid's media server together, on this machine only.

    python -m prodvid_dagster.ui [--port 3000] [--media-port 3001] [--store DIR] [--workspace workspace.yaml]

1. `prodvid serve` for the store on 127.0.0.1:<media port>: the review page and the files the links open;
2. `dagster dev` (webserver and daemon) on 127.0.0.1:<port>, with `PRODVID_MEDIA_URL` set to the media
   server, so every hero image, contact sheet and video of a local store links there;
3. Ctrl-C (or SIGTERM) stops both, by their pids: `dagster dev` gets one SIGINT (a second one would cut its
   own shutdown short, so each child runs in a process group of its own, out of reach of the terminal's
   Ctrl-C) and the media server a SIGTERM; whatever still runs after `STOP_SECONDS` is killed with its group.
   If either exits by itself, the other is stopped too.

No dagster import: this only starts and stops processes.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_PORT", 3000)))
    parser.add_argument("--media-port", type=int, default=int(os.environ.get("PRODVID_MEDIA_PORT", 3001)))
    parser.add_argument("--store", default=os.environ.get("PRODVID_STORE") or "./prodvid-data")
    parser.add_argument("--workspace", default="workspace.yaml", help="the workspace file dagster dev loads")
    return parser


def _stop(proc: subprocess.Popen, sig: int, deadline: float) -> None:
    """Signal `proc` once, then kill its process group if it has not ended by `deadline`."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(args.port),
         "-w", args.workspace],
        env=env, start_new_session=True,
    )  # fmt: skip
    print(
        f"prodvid ui: Dagster at http://127.0.0.1:{args.port}, review page and media at {media_url}/ "
        f"(store {store}); Ctrl-C stops both.",
        flush=True,
    )

    # 3. until Ctrl-C, SIGTERM, or one of them ends
    stopping = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and media.poll() is None and dev.poll() is None:
        time.sleep(0.2)
    deadline = time.monotonic() + STOP_SECONDS
    _stop(dev, signal.SIGINT, deadline)
    _stop(media, signal.SIGTERM, deadline)
    print("prodvid ui: stopped.", flush=True)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
