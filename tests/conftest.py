"""Shared fixtures: the tiny offline models (built once per session), stores, and the real S3 server."""

from __future__ import annotations

import pytest

from prodvid_core import models

pytest_plugins = ["s3_server"]


@pytest.fixture(scope="session", autouse=True)
def _prodvid_cache(tmp_path_factory):
    """Build the tiny preset once per session in a temp folder, never in the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PRODVID_CACHE", str(tmp_path_factory.mktemp("prodvid-cache")))
    mp.delenv("PRODVID_STORE", raising=False)
    mp.delenv("PRODVID_PRESET", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_pipe(_prodvid_cache):
    return models.load_inpaint_pipeline(models.TINY_PRESET, device="cpu")


@pytest.fixture
def local_store(tmp_path):
    from prodvid_core.storage import LocalStore

    return LocalStore(tmp_path / "store")
