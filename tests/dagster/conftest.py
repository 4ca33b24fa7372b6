"""Fixtures for the Dagster layer: a real DagsterInstance in a temp DAGSTER_HOME, small fast settings through
the documented env vars, a store, and SKUs dropped into its inbox the way a catalog team would."""

from pathlib import Path

import dagster as dg
import pytest
import torch
from dgtest import DAGSTER_YAML, FAST_ENV, UNSET_ENV

from prodvid_core.storage import LocalStore


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny models gain nothing from threads, and two OpenMP threads on a busy 2-core machine spin
    against other processes: a 0.1 s call then takes 9 s. One thread keeps timings stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_env(monkeypatch):
    for name, value in FAST_ENV.items():
        monkeypatch.setenv(name, value)
    for name in (*UNSET_ENV, "PRODVID_STORE", "PRODVID_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """A real, persistent (sqlite) instance in a temp DAGSTER_HOME, as `dagster dev` would use."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def store_root(tmp_path, fast_env, monkeypatch) -> Path:
    """A local store, also set as PRODVID_STORE so the definitions' resources find it."""
    root = tmp_path / "store"
    monkeypatch.setenv("PRODVID_STORE", str(root))
    return root


@pytest.fixture
def store(store_root) -> LocalStore:
    return LocalStore(store_root)
