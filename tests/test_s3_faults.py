"""S3 faults, measured: real `prodvid generate` subprocesses against S3-protocol servers that fail.

1. s3rver (keeps its objects in a folder) SIGKILLed mid-run and started again on the same port and folder:
   after a short outage the run finishes by itself (botocore's retries); after a long one (AWS_MAX_ATTEMPTS=3)
   the run stops with one line naming the SKU and the object, and running it again finishes it (resume).
2. A fault-injecting proxy (`fault_proxy.py`) in front of moto: 503 SlowDown, connection resets mid-request
   and mid-response, latency; the run finishes. A proxy that fails every request gives the one line, exit 2.

After each run that finishes, the stored objects are byte for byte those of an undisturbed run (into a
local folder), and none is corrupt (s3rver's own MD5 of each object matches its bytes).

Marked `s3faults`. The default run makes one trial of each; PRODVID_S3FAULT_TRIALS=N makes N (seeded: trial
i uses seed i), and PRODVID_S3FAULT_REPORT=path.json writes what each trial measured (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from fault_proxy import FaultProxy
from prodvid_core import layout
from prodvid_core.sample import sample_photo_bytes
from s3_server import DUMMY_AWS_ENV
from s3rver import BUCKET, S3RVER_ENV, S3rver

pytestmark = pytest.mark.s3faults

TRIALS = int(os.environ.get("PRODVID_S3FAULT_TRIALS", "1"))
SKU = "S3F-1"
PREFIX = "runs/"
# 7 frames at 256x256 panning 60% of the width: the hero image and 3 frame calls, ~10 S3 objects
RUN = [
    "--preset", "tiny", "--size", "256", "--steps", "1", "--prompt", "a bottle on a table", "--seed", "5",
    "--camera", json.dumps({"path": "pan", "distance": [-0.6, 0]}), "--seconds", "0.5", "--fps", "12",
    "--lookahead", "32",
]  # fmt: skip
# Per request: 10% SlowDown, 5% reset while reading the request, 5% reset in the response, 20% latency
RATES = {"slowdown": 0.10, "reset_request": 0.05, "reset_response": 0.05, "latency": 0.20}
FIGURES: list[dict] = []
RUNNING: list[subprocess.Popen] = []


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("PRODVID_S3FAULT_REPORT")
    if path:
        report = {"totals": _totals(FIGURES), "trials": FIGURES}
        Path(path).write_text(json.dumps(report, indent=1) + "\n")


def _totals(figures: list[dict]) -> dict[str, dict]:
    """Per kind of trial: trials, faults by kind, server restarts, retries, runs finished, objects checked,
    lost and corrupt (docs/reliability.md's table)."""
    totals: dict[str, dict] = {}
    for trial in figures:
        total = totals.setdefault(trial["test"], {"trials": 0})
        total["trials"] += 1
        for name in ("restarts", "mid_run", "runs", "objects", "lost", "corrupt", "requests", "retries"):
            if name in trial:
                total[name] = total.get(name, 0) + trial[name]
        total["finished"] = total.get("finished", 0) + trial.get("finished", False)
        for kind_method, n in trial.get("faults", {}).items():
            faults = total.setdefault("faults", {})
            faults[kind_method] = faults.get(kind_method, 0) + n
        for name in ("down_s", "gave_up_s", "max_attempt"):
            if trial.get(name) is not None:
                total[f"max {name}"] = max(total.get(f"max {name}", 0), trial[name])
    return totals


@pytest.fixture(autouse=True)
def _no_run_left_behind():
    """A test that fails or is interrupted mid-run kills its `prodvid` subprocess (by pid)."""
    yield
    for proc in RUNNING:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    RUNNING.clear()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "bottle.png"
    path.write_bytes(sample_photo_bytes())
    return path


def _env(aws: dict[str, str], **extra: str) -> dict[str, str]:
    """This process's environment (PYTHONPATH, PRODVID_CACHE) with only the given AWS settings. One torch
    thread: the tiny models gain nothing from more, and on a busy 2-core machine two spin against each
    other."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "OMP_NUM_THREADS": "1", **aws, **extra}


def _generate(
    photo: Path, store: str, *, env: dict[str, str], endpoint: str | None = None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "prodvid_core.cli", "generate", SKU, "--image", str(photo), "--store", store]
    cmd += [*RUN, *(["--s3-endpoint-url", endpoint] if endpoint else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    RUNNING.append(proc)
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture(scope="module")
def undisturbed(photo, tmp_path_factory) -> dict[str, object]:
    """What an undisturbed run stores (into a local folder), and its diffusion calls."""
    root = tmp_path_factory.mktemp("undisturbed")
    rc, err = _finish(_generate(photo, str(root), env=_env({})))
    assert rc == 0, err
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return files


def _calls(undisturbed: dict) -> int:
    return len(json.loads(undisturbed[layout.frames_manifest(SKU)])["calls"])


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("prodvid: error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- 1. s3rver killed and started again mid-run --------------------------------------------------------


def _wait_for_moment(server: S3rver, proc: subprocess.Popen, moment: int) -> bool:
    """Wait until the run has stored its hero image (`moment` 0) or `moment` frame calls, as s3rver's folder
    shows; False if the run ended first."""
    root = server.folder / BUCKET / PREFIX
    hero = root / f"{layout.hero_png(SKU)}._S3rver_object"
    manifest = root / f"{layout.frames_manifest(SKU)}._S3rver_object"
    while proc.poll() is None:
        try:
            if hero.exists() and (moment == 0 or len(json.loads(manifest.read_bytes())["calls"]) >= moment):
                return True
        except (FileNotFoundError, ValueError):  # not there yet, or being written
            pass
        time.sleep(0.005)
    return False


def _check_stored(server: S3rver, undisturbed: dict) -> dict[str, int]:
    """Every object is intact (its bytes match s3rver's MD5 of them) and is the undisturbed run's."""
    objects = server.objects(PREFIX)
    corrupt = [
        key
        for key in objects
        if hashlib.md5(objects[key]).hexdigest()
        != (server.folder / BUCKET / f"{key}._S3rver_object.md5").read_text().strip()
    ]
    stored = {key[len(PREFIX) :]: data for key, data in objects.items()}
    lost = sorted(set(undisturbed) - set(stored))
    different = sorted(k for k in set(undisturbed) & set(stored) if stored[k] != undisturbed[k])
    assert not corrupt and not lost and not different and set(stored) == set(undisturbed), (
        corrupt,
        lost,
        different,
        sorted(set(stored) - set(undisturbed)),
    )
    return {"objects": len(objects), "lost": len(lost), "corrupt": len(corrupt) + len(different)}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_s3rver_restarted_after_a_short_outage_the_run_finishes_by_itself(
    trial, photo, undisturbed, tmp_path
):
    rng = random.Random(trial)
    moment, outage = rng.randrange(_calls(undisturbed) + 1), rng.uniform(0.3, 1.5)
    server = S3rver(tmp_path / "s3rver")
    try:
        proc = _generate(photo, f"s3://{BUCKET}/{PREFIX}", env=_env(S3RVER_ENV), endpoint=server.endpoint)
        down, mid_run = None, False
        if _wait_for_moment(server, proc, moment):
            time.sleep(rng.uniform(0, 0.3))
            mid_run = proc.poll() is None  # else the run ended in the pause: an outage after it
            server.kill()
            killed_at = time.monotonic()
            time.sleep(outage)
            server.start()
            down = round(time.monotonic() - killed_at, 2)  # until it listens again
        rc, err = _finish(proc)
        assert rc == 0, err
        figures = _check_stored(server, undisturbed)
    finally:
        server.stop()
    FIGURES.append(
        {"test": "s3rver short outage", "trial": trial, "moment": moment, "down_s": down, "mid_run": mid_run,
         "restarts": server.starts - 1, "runs": 1, "finished": True, **figures}
    )  # fmt: skip


@pytest.mark.parametrize("trial", range(TRIALS))
def test_s3rver_down_longer_than_the_retries_one_clear_error_then_a_rerun_finishes(
    trial, photo, undisturbed, tmp_path
):
    rng = random.Random(1000 + trial)
    moment = rng.randrange(_calls(undisturbed))  # a call is still to come: the run cannot end before the kill
    server = S3rver(tmp_path / "s3rver")
    store, env = f"s3://{BUCKET}/{PREFIX}", _env(S3RVER_ENV)
    try:
        proc = _generate(photo, store, env={**env, "AWS_MAX_ATTEMPTS": "3"}, endpoint=server.endpoint)
        assert _wait_for_moment(server, proc, moment), "the run ended before its last frame call"
        time.sleep(rng.uniform(0, 0.3))
        server.kill()
        killed_at = time.monotonic()
        rc, err = _finish(proc)  # the server stays down until the run has given up
        gave_up = round(time.monotonic() - killed_at, 2)
        assert rc == 2, err
        line = _one_error_line(err)
        assert line.startswith(f"prodvid: error: SKU {SKU}: cannot "), line
        assert f" s3://{BUCKET}/{PREFIX}" in line and "unreachable after 3 attempts" in line, line

        server.start()
        rc, err = _finish(_generate(photo, store, env=env, endpoint=server.endpoint))
        assert rc == 0, err
        figures = _check_stored(server, undisturbed)
    finally:
        server.stop()
    FIGURES.append(
        {"test": "s3rver long outage", "trial": trial, "moment": moment, "gave_up_s": gave_up, "error": line,
         "restarts": server.starts - 1, "runs": 2, "finished": True, **figures}
    )  # fmt: skip


# --- 2. A fault-injecting proxy in front of moto --------------------------------------------------------


def _moto_bucket(endpoint: str, name: str) -> Callable[[], dict[str, bytes]]:
    """A new bucket on moto, and a reader of what it holds (straight from moto, not through the proxy)."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)

    def objects() -> dict[str, bytes]:
        listed = client.list_objects_v2(Bucket=name).get("Contents", [])
        return {o["Key"]: client.get_object(Bucket=name, Key=o["Key"])["Body"].read() for o in listed}

    return objects


@pytest.mark.parametrize("trial", range(TRIALS))
def test_faults_through_a_proxy_the_run_finishes_byte_identical(
    trial, photo, undisturbed, s3_endpoint, tmp_path
):
    bucket = f"prodvid-faults-{trial}-{os.getpid()}"
    objects = _moto_bucket(s3_endpoint, bucket)
    start = time.monotonic()
    with FaultProxy(s3_endpoint, seed=trial, rates=RATES) as proxy:
        rc, err = _finish(
            _generate(photo, f"s3://{bucket}/{PREFIX}", env=_env(DUMMY_AWS_ENV), endpoint=proxy.url)
        )
    assert rc == 0, err
    stored = {key[len(PREFIX) :]: data for key, data in objects().items()}
    assert stored == undisturbed
    injected = sum(n for kind, n in proxy.faults.items() if kind != "latency")
    assert injected > 0 and proxy.retries > 0, (proxy.faults, proxy.retries)
    FIGURES.append(
        {"test": "proxy faults", "trial": trial, "requests": proxy.requests, "faults": dict(proxy.faulted),
         "retries": proxy.retries, "max_attempt": proxy.max_attempt, "runs": 1, "finished": True,
         "objects": len(stored), "lost": 0, "corrupt": 0, "seconds": round(time.monotonic() - start, 1)}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("slowdown", "SlowDown: Please reduce your request rate (after 3 attempts)"),
        ("reset_request", "closed"),
    ],
)
def test_a_store_that_keeps_failing_gives_one_line_naming_the_sku_and_key(
    fault, words, photo, s3_endpoint, tmp_path
):
    bucket = f"prodvid-failing-{fault.replace('_', '-')}-{os.getpid()}"
    objects = _moto_bucket(s3_endpoint, bucket)
    with FaultProxy(s3_endpoint, seed=0, rates={fault: 1.0}) as proxy:
        env = _env(DUMMY_AWS_ENV, AWS_MAX_ATTEMPTS="3")
        rc, err = _finish(_generate(photo, f"s3://{bucket}/{PREFIX}", env=env, endpoint=proxy.url))
    assert rc == 2, err
    line = _one_error_line(err)
    # The run's first request: the canvas's old sidecar deleted before the canvas is replaced (artifacts.py)
    key = f"s3://{bucket}/{PREFIX}{layout.canvas_json(SKU)}"
    assert line.startswith(f"prodvid: error: SKU {SKU}: cannot delete {key} "), line
    assert words in line, line
    assert proxy.requests == proxy.max_attempt == 3 and proxy.faults[fault] == 3
    assert objects() == {}
    FIGURES.append({"test": f"failing store ({fault})", "requests": proxy.requests, "error": line})
