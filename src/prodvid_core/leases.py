"""Device leases: with N GPUs on one host, N processes (Dagster runs, `prodvid inbox --workers N`) use N GPUs.

A process that paints on a GPU it was not told the index of (`device="cuda"` or `"auto"`) takes a lease on a
free device slot when it loads its first model: an exclusive `flock` on `$PRODVID_CACHE/leases/slot-<i>.lock`,
held for the rest of the process's life. The kernel drops the lock when the process ends in any way, kill -9
and an out-of-memory kill included, so a lease never outlives its process and there is nothing to clean up.
Slot i is `cuda:<i mod the CUDA device count>`. One lease per process: every model of a run shares the GPU.

Settings (environment; read here only):
    PRODVID_GPU_COUNT   how many slots to lease. Default: the CUDA device count, and none (no lease) when
                        the process paints on the CPU. Fewer than the devices keeps prodvid off the others;
                        twice the devices puts two processes on each GPU (one with room for both pipelines).
                        On a CPU-only machine the slots all name the CPU: it caps how many processes paint at
                        once, and it is how the tests stand in for a machine with N GPUs.
    PRODVID_LEASE_WAIT  seconds to wait for a free slot before giving up (default 60): a Dagster run that has
                        finished may still be exiting when the run queue starts the next one.

An explicit `cuda:<index>` takes no lease: the caller chose the device.

Example:
    >>> device_for("cuda")  # on a host with 2 GPUs, the second process gets
    'cuda:1'
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prodvid_core.errors import ModelUnavailableError, SettingsError

__all__ = ["Lease", "check_env", "slot_count", "lease", "device_for", "held", "lease_dir"]

WAIT_S = 60.0
_POLL_S = 0.1

_LOCK = threading.Lock()
_HELD: Lease | None = None


@dataclass(frozen=True)
class Lease:
    """This process's device slot: `slot` of `count`, the `device` it names and the lock file held."""

    slot: int
    count: int
    device: str
    path: Path
    fd: int

    def describe(self) -> str:
        return f"{self.device} (device slot {self.slot} of {self.count})"


def lease_dir() -> Path:
    """Where the lock files are: `$PRODVID_CACHE/leases` (default `~/.cache/prodvid/leases`)."""
    root = os.environ.get("PRODVID_CACHE") or Path.home() / ".cache" / "prodvid"
    return Path(root).expanduser() / "leases"


def slot_count(device: str) -> int:
    """How many slots a process painting on `device` (`cuda` or `cpu`) leases among: PRODVID_GPU_COUNT, else
    the CUDA device count on CUDA and 0 (no lease) on the CPU."""
    raw = os.environ.get("PRODVID_GPU_COUNT", "").strip()
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= 1024:
            raise SettingsError(f"PRODVID_GPU_COUNT has to be a whole number from 1 to 1024 but is {raw!r}.")
        return int(raw)
    if device != "cuda":
        return 0
    import torch

    return torch.cuda.device_count()


def check_env() -> None:
    """Refuse a PRODVID_GPU_COUNT or PRODVID_LEASE_WAIT that cannot work, before anything is made (cheap: no
    torch)."""
    slot_count("cpu")
    _wait_s()


def _wait_s() -> float:
    raw = os.environ.get("PRODVID_LEASE_WAIT", "").strip()
    try:
        wait = float(raw) if raw else WAIT_S
    except ValueError:
        wait = -1.0
    if not 0 <= wait < float("inf"):
        raise SettingsError(f"PRODVID_LEASE_WAIT has to be a number of seconds, 0 or more, but is {raw!r}.")
    return wait


def held() -> Lease | None:
    """This process's lease, if it has taken one."""
    return _HELD


def lease(device: str) -> Lease | None:
    """Take (once per process) a free slot for `device` (`cuda` or `cpu`), waiting up to PRODVID_LEASE_WAIT
    seconds for one; None when there are no slots to lease (the CPU without PRODVID_GPU_COUNT)."""
    global _HELD
    with _LOCK:
        if _HELD is not None:
            return _HELD
        count = slot_count(device)
        if count == 0:
            return None
        folder = lease_dir()
        folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _wait_s()
        while True:
            for slot in range(count):
                taken = _try(folder / f"slot-{slot}.lock")
                if taken is not None:
                    _HELD = Lease(slot, count, _device(device, slot), folder / f"slot-{slot}.lock", taken)
                    return _HELD
            if time.monotonic() >= deadline:
                raise ModelUnavailableError(
                    f"every device slot is leased ({count}, PRODVID_GPU_COUNT or the CUDA device count; held "
                    f"by pids {_holders(folder, count)}, lock files in {folder}): wait for a run to end, or "
                    "raise PRODVID_GPU_COUNT on a GPU with room for another process."
                )
            time.sleep(_POLL_S)


def device_for(device: str) -> str:
    """The device this process paints on: `device` (resolved: `cuda`, `cuda:<i>` or `cpu`) with a leased
    slot's index when it names no index."""
    if device.startswith("cuda:"):
        return device
    taken = lease(device)
    return taken.device if taken is not None else device


def _device(device: str, slot: int) -> str:
    if device != "cuda":
        return device
    import torch

    return f"cuda:{slot % max(1, torch.cuda.device_count())}"


def _try(path: Path) -> int | None:
    """An open descriptor of `path` holding its exclusive lock, or None if another process holds it. The
    descriptor is not inherited by programs this process starts (ffmpeg), so they never keep a lease."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for a person, and the message above
    return fd


def _holders(folder: Path, count: int) -> str:
    pids = []
    for slot in range(count):
        try:
            pids.append((folder / f"slot-{slot}.lock").read_text().strip() or "?")
        except OSError:
            pids.append("?")
    return ", ".join(pids)
