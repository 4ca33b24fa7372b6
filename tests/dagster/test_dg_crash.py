"""Crash consistency of a Dagster run, measured: the run worker SIGKILLed mid-step at seeded random moments.

`dg dev` with the shipped dagster.yaml (test_dg_dev's fixture): its code server starts each run in a run
worker process (the default run launcher), and when that process dies, marks the run failed; the shipped
`run_retries` then re-execute it from failure. Each trial launches the SKU's partition into a store of its
own (the `store` resource's config), finds the run worker's pid in the run's first engine event, and kills
it with SIGKILL in a step, the steps in turn: after a moment drawn uniformly (seeded) over that step's
length in an uninterrupted run, counted from the step's STEP_START event. Then:

1. right after the kill, nothing partial is stored under a final name and the manifest agrees with the
   stored objects (`crashcheck.store_problems`, on a copy taken before the retry starts);
2. the automatic retry succeeds, and every stored file is byte for byte the one an uninterrupted run of the
   same partition stores.

`PRODVID_CRASH_DAGSTER_TRIALS` sets the count (1 by default, for CI; docs/reliability.md has the full count),
`PRODVID_CRASH_SEED` the seed, `PRODVID_CRASH_LOG` a file that gets one JSON line per trial.
"""

import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from dgtest import drop_sku
from test_dg_dev import RUNS, dagster_dev, finished, graphql, repository, wait_for  # noqa: F401 (fixture)

from crashcheck import SEED, final_files, log_trial, store_problems
from crashcheck import phase as stored_phase
from prodvid_core.storage import LocalStore

pytestmark = pytest.mark.crash

TRIALS = int(os.environ.get("PRODVID_CRASH_DAGSTER_TRIALS", "1"))
SKU = "DG-CRASH"
# 12 frames panning half the 256 px width: several diffusion calls at lookahead 16
BRIEF = {
    "prompt": "a bottle on a wooden table",
    "seed": 7,
    "num_frames": 12,
    "fps": 12,
    "camera": {"path": "pan", "distance": [-0.5, -0.2]},
}
LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
ADD_PARTITION = """mutation($key: String!, $repo: RepositorySelector!) {
  addDynamicPartition(partitionsDefName: "sku", partitionKey: $key, repositorySelector: $repo) {
    __typename } }"""
STEPS = ("frames", "hero_image", "video", "expanded_canvas")  # aimed at in turn
PID = re.compile(r"(?:Started process for run|Executing steps in process) \(pid: (\d+)\)")


def _launch(dev, store: Path) -> str:
    """Materialize the SKU's partition into `store`, as the launchpad does; the run id."""
    repo = repository(dev.port)
    graphql(dev.port, ADD_PARTITION, {"key": SKU, "repo": repo})
    config = {
        "resources": {
            "store": {"config": {"location": str(store)}},
            "models": {"config": {"lookahead": 16}},
        }
    }
    params = {
        "selector": {**repo, "jobName": "prodvid"},
        "runConfigData": config,
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": SKU}]},
    }
    launched = graphql(dev.port, LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _worker_pid(dev, run_id: str) -> int | None:
    """The run worker's pid, from the first event its process logs (the in-process executor runs every step
    in it)."""
    for event in dev.instance.all_logs(run_id):
        if match := PID.search(event.user_message or ""):
            return int(match.group(1))
    return None


def _running_step(dev, run_id: str) -> str:
    """The step that had started and not ended when the worker died ("-" if none)."""
    running = []
    for event in dev.instance.all_logs(run_id):
        kind, step = event.dagster_event_type, event.step_key
        if kind is not None and kind.value == "STEP_START":
            running.append(step)
        elif kind is not None and kind.value in ("STEP_SUCCESS", "STEP_FAILURE") and step in running:
            running.remove(step)
    return running[-1] if running else "-"


def _start(dev, store: Path) -> tuple[str, int]:
    """Launch into `store` and wait for the run worker; the run id and the worker's pid."""
    drop_sku(LocalStore(store), SKU, BRIEF)
    run_id = _launch(dev, store)
    pid = wait_for(lambda: _worker_pid(dev, run_id), 240, "the run worker", dev.proc, dev.log, every=0.1)
    return run_id, pid


def _step_seconds(dev, run_id: str) -> dict[str, float]:
    """How long each step of a finished run took, from its STEP_START and STEP_SUCCESS events."""
    began, took = {}, {}
    for event in dev.instance.all_logs(run_id):
        kind = event.dagster_event_type.value if event.dagster_event_type else ""
        if kind == "STEP_START":
            began[event.step_key] = event.timestamp
        elif kind == "STEP_SUCCESS":
            took[event.step_key] = event.timestamp - began[event.step_key]
    return took


def _step_started(dev, run_id: str, step: str) -> bool:
    return any(
        e.step_key == step and e.dagster_event_type and e.dagster_event_type.value == "STEP_START"
        for e in dev.instance.all_logs(run_id)
    )


@pytest.fixture(scope="module")
def reference(
    dagster_dev,  # noqa: F811 (the fixture imported above)
    tmp_path_factory,
) -> tuple[dict[str, bytes], dict[str, float]]:
    """An uninterrupted run of the partition: the files it stores, and how long each step took."""
    store = tmp_path_factory.mktemp("dg-crash-reference") / "store"
    run_id, _ = _start(dagster_dev, store)
    status = wait_for(lambda: finished(dagster_dev.port, run_id), 300, "the reference run", dagster_dev.proc,
                      dagster_dev.log, every=0.1)  # fmt: skip
    assert status == "SUCCESS", dagster_dev.log.read_text()[-4000:]
    return final_files(store), _step_seconds(dagster_dev, run_id)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkilled_run_worker_leaves_a_consistent_store_and_the_retry_is_byte_identical(
    trial,
    dagster_dev,  # noqa: F811
    reference,
    tmp_path,
):
    dev, (expected, steps) = dagster_dev, reference
    start, rng = time.monotonic(), random.Random(f"{SEED}-dagster-{trial}")
    store = tmp_path / "store"

    # 1. Kill the run worker at a moment drawn within one step (the steps in turn) of an uninterrupted run,
    #    counted from the step's start
    aim = STEPS[trial % len(STEPS)]
    since = time.time()
    run_id, pid = _start(dev, store)

    def begun() -> bool:
        return _step_started(dev, run_id, aim) or finished(dev.port, run_id) is not None

    wait_for(begun, 300, f"step {aim}", dev.proc, dev.log, every=0.05)
    delay = rng.uniform(0, steps[aim])
    time.sleep(delay)
    killed = finished(dev.port, run_id) is None
    if killed:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    snapshot = tmp_path / "after-kill"
    shutil.copytree(store, snapshot)  # the retry starts seconds later, after the worker's death is seen
    where = stored_phase(store, SKU, since)
    record = {"harness": "dagster", "seed": SEED, "trial": trial, "aim": aim, "delay": round(delay, 2),
              "killed": killed, "step": _running_step(dev, run_id), "phase": where,
              "temp_files": sum(p.name.startswith(".") for p in snapshot.rglob("*"))}  # fmt: skip
    try:
        record["problems_after_kill"] = problems = store_problems(snapshot)
        killed_in = f"trial {trial}, killed {delay:.1f} s into step {aim}, in {record['step']}"
        assert not problems, f"{killed_in}: {problems}"

        # 2. The code server marks the run failed; the shipped run_retries re-execute it from failure
        status = wait_for(lambda: finished(dev.port, run_id), 120, "the run to fail", dev.proc, dev.log)
        final = run_id
        if killed:
            assert status == "FAILURE", f"trial {trial}: the killed run ended {status}"
            final = wait_for(lambda: _retry(dev, run_id), 360, "the retry", dev.proc, dev.log)
        assert finished(dev.port, final) == "SUCCESS", dev.log.read_text()[-4000:]
        record["problems_after_retry"] = problems = store_problems(store)
        resumed = final_files(store)
        record["differing"] = differing = sorted(
            k for k in resumed.keys() | expected.keys() if resumed.get(k) != expected.get(k)
        )
        assert not problems, f"trial {trial}: after the retry: {problems}"
        assert not differing, f"{killed_in}: {differing}"
    finally:
        record["seconds"] = round(time.monotonic() - start, 1)
        log_trial(record)


def _retry(dev, run_id: str) -> str | None:
    """The id of the run's automatic retry once it has finished, else None."""
    runs = graphql(dev.port, RUNS, {"key": "dagster/root_run_id", "value": run_id})["runsOrError"]["results"]
    done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
    return done[0]["runId"] if done and len(done) == len(runs) else None
