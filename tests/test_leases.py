"""Device leases: N processes on a host with N device slots each hold their own, and lose it on any exit.

The slots are simulated with PRODVID_GPU_COUNT on this CPU machine (the lease code's own setting: slot i
names the CPU here, `cuda:<i>` on a GPU host). Real processes, real `flock`s, a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prodvid_core import leases, request
from prodvid_core.errors import SettingsError
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.settings import Settings

HOLD = """
import sys, time
from prodvid_core import leases
lease = leases.lease("cpu")
print(lease.slot, lease.device, flush=True)
time.sleep(120)
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Two device slots, their lock files in `tmp_path` (PRODVID_CACHE/leases)."""
    return {**os.environ, "PRODVID_CACHE": str(tmp_path), "PRODVID_GPU_COUNT": "2", **extra}


def _holder(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen, int]:
    """A process that takes a lease and keeps it; its slot."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD], env=_env(tmp_path, **extra), stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().split()
    assert line and line[1] == "cpu", line
    return proc, int(line[0])


def _lease_once(tmp_path: Path) -> subprocess.CompletedProcess:
    code = "from prodvid_core import leases; print(leases.lease('cpu').slot)"
    env = _env(tmp_path, PRODVID_LEASE_WAIT="0")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_each_process_holds_its_own_slot_and_loses_it_when_killed(tmp_path):
    first, slot_a = _holder(tmp_path)
    second, slot_b = _holder(tmp_path)
    try:
        assert {slot_a, slot_b} == {0, 1}
        full = _lease_once(tmp_path)  # both slots held: refused, naming the holders
        assert full.returncode != 0
        assert "every device slot is leased (2" in full.stderr and str(first.pid) in full.stderr

        first.send_signal(signal.SIGKILL)  # no handler runs: the kernel drops the flock
        first.wait(timeout=30)
        again = _lease_once(tmp_path)
        assert again.returncode == 0, again.stderr
        assert int(again.stdout) == slot_a
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(timeout=30)


def test_no_slots_on_the_cpu_unless_counted(monkeypatch):
    monkeypatch.delenv("PRODVID_GPU_COUNT", raising=False)
    assert leases.slot_count("cpu") == 0
    assert leases.device_for("cuda:3") == "cuda:3"  # an explicit index takes no lease
    monkeypatch.setenv("PRODVID_GPU_COUNT", "two")
    with pytest.raises(SettingsError, match="PRODVID_GPU_COUNT has to be a whole number"):
        request.check_settings(Settings(device="cpu").with_preset("tiny"))  # before anything is made
    monkeypatch.setenv("PRODVID_GPU_COUNT", "2")
    monkeypatch.setenv("PRODVID_LEASE_WAIT", "soon")
    with pytest.raises(SettingsError, match="PRODVID_LEASE_WAIT has to be a number"):
        leases.check_env()


def test_inbox_workers_make_skus_on_different_leases(tmp_path):
    store = tmp_path / "store"
    (store / "inbox").mkdir(parents=True)
    for i in range(2):
        (store / "inbox" / f"W-{i}.png").write_bytes(sample_photo_bytes(size=(300, 400)))
        (store / "inbox" / f"W-{i}.json").write_text(json.dumps({"prompt": "a cup", "num_frames": 3}))
    cmd = [sys.executable, "-m", "prodvid_core.cli", "inbox", "--store", str(store), "--workers", "2"]
    cmd += ["--preset", "tiny", "--size", "128", "--steps", "1"]
    env = _env(tmp_path, PRODVID_CACHE=os.environ["PRODVID_CACHE"])  # the session's tiny preset
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "2 SKUs made." in out.stdout
    slots = dict(re.findall(r"SKU (W-\d): .* on cpu \(device slot (\d) of 2\)", out.stdout + out.stderr))
    assert sorted(slots) == ["W-0", "W-1"] and sorted(slots.values()) == ["0", "1"], out.stdout
    assert all((store / "video" / f"W-{i}.mp4").is_file() for i in range(2))
