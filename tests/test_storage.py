"""One set of behaviour tests for every `ObjectStore`: a local folder and an S3 bucket on a real S3 server."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fault_proxy import FaultProxy
from prodvid_core.errors import StorageError
from prodvid_core.layout import sku_of
from prodvid_core.storage import (
    S3_MAX_ATTEMPTS,
    STALE_TEMP_SECONDS,
    LocalStore,
    ObjectStore,
    S3Store,
    open_store,
)
from s3_server import DUMMY_AWS_ENV, start_s3_server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return request.getfixturevalue("s3_store")


# --- the same behaviour on every store ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\x00\xff\n\r binary", os.urandom(3 * 1024 * 1024 + 7)], ids=lambda d: f"{len(d)}B"
)
def test_round_trip(store: ObjectStore, data: bytes) -> None:
    store.write_bytes("hero_image/SKU-1.png", data)
    assert store.read_bytes("hero_image/SKU-1.png") == data


def test_overwrite_replaces(store: ObjectStore) -> None:
    store.write_bytes("mask/A.png", b"a much longer first version")
    store.write_bytes("mask/A.png", b"second")
    assert store.read_bytes("mask/A.png") == b"second"
    assert store.list() == ["mask/A.png"]


def test_exists(store: ObjectStore) -> None:
    store.write_bytes("hero_image/A.png", b"x")
    assert store.exists("hero_image/A.png")
    assert not store.exists("hero_image/B.png")
    assert not store.exists("hero_image")  # a "folder" is not an object
    assert not store.exists("hero_image/A.pn")  # nor is a prefix of a key


def test_list_is_sorted_and_filtered_by_prefix(store: ObjectStore) -> None:
    keys = [
        "frames/B/00001.png",
        "inbox/A.json",
        "frames/AB/00000.png",
        "frames/A/00000.png",
        "hero_image/A.png",
    ]
    for key in keys:
        store.write_bytes(key, key.encode())
    assert store.list() == sorted(keys)
    assert store.list("frames/") == ["frames/A/00000.png", "frames/AB/00000.png", "frames/B/00001.png"]
    assert store.list("frames/A/") == ["frames/A/00000.png"]
    assert store.list("frames/A") == ["frames/A/00000.png", "frames/AB/00000.png"]  # a prefix, not a folder
    assert store.list("inbox/A.") == ["inbox/A.json"]
    assert store.list("video/") == []
    assert store.list("frames/../") == []


def test_list_etags_change_when_an_object_is_rewritten_and_only_then(store: ObjectStore) -> None:
    store.write_bytes("inbox/A.json", b'{"prompt": "one"}')
    store.write_bytes("inbox/B.json", b'{"prompt": "two"}')
    store.write_bytes("hero_image/A.png", b"x")
    first = store.list_etags("inbox/")
    assert list(first) == ["inbox/A.json", "inbox/B.json"]
    assert all(first.values()) and first["inbox/A.json"] != first["inbox/B.json"]
    assert list(store.list_etags()) == store.list() == ["hero_image/A.png", "inbox/A.json", "inbox/B.json"]

    store.read_bytes("inbox/A.json")
    store.write_bytes("hero_image/A.png", b"y")
    assert store.list_etags("inbox/") == first  # reading, or writing other keys, changes no etag

    store.write_bytes("inbox/A.json", b'{"prompt": "uno"}')  # same size, other bytes, at once
    second = store.list_etags("inbox/")
    assert second["inbox/A.json"] != first["inbox/A.json"]
    assert second["inbox/B.json"] == first["inbox/B.json"]
    store.write_bytes("inbox/A.json", b'{"prompt": "one"}')  # back to the first bytes
    assert store.list_etags("inbox/")["inbox/A.json"] != second["inbox/A.json"]


def test_missing_key_is_file_not_found(store: ObjectStore) -> None:
    store.write_bytes("hero_image/A.png", b"x")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("hero_image/B.png")


def test_delete_removes_outputs(store: ObjectStore) -> None:
    store.write_bytes("video/A.mp4", b"v")
    store.write_bytes("video/A.json", b"{}")
    store.delete("video/A.mp4")
    assert not store.exists("video/A.mp4")
    assert store.list() == ["video/A.json"]
    store.delete("video/A.mp4")  # deleting what is gone is not an error
    assert store.list() == ["video/A.json"]


def test_delete_refuses_inbox(store: ObjectStore) -> None:
    store.write_bytes("inbox/A.png", b"the product photo")
    with pytest.raises(StorageError, match="inbox"):
        store.delete("inbox/A.png")
    assert store.read_bytes("inbox/A.png") == b"the product photo"


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "", "a/../b", "a/./b", "a/"])
def test_invalid_keys_are_rejected(store: ObjectStore, key: str) -> None:
    for operation in (
        store.read_bytes,
        store.exists,
        store.delete,
        store.url,
        lambda k: store.write_bytes(k, b""),
    ):
        with pytest.raises(StorageError, match="not a relative path"):
            operation(key)
    assert store.list() == []


# --- LocalStore ----------------------------------------------------------------------------------------


def test_local_write_failing_midway_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)
    store.write_bytes("hero_image/A.png", b"old")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.write_bytes("hero_image/A.png", b"new")
    assert store.read_bytes("hero_image/A.png") == b"old"
    assert [p.name for p in (tmp_path / "hero_image").iterdir()] == ["A.png"]  # no temp file left behind


def test_local_rewrite_removes_the_stale_temp_files_a_killed_writer_left(tmp_path: Path) -> None:
    """A kill between a write's open and its rename leaves `.<name>.<random>.tmp`; the next write of that
    key deletes it once it is older than STALE_TEMP_SECONDS, and keeps a young one (a write in progress)
    and the temp files of other keys."""
    store = LocalStore(tmp_path)
    folder = tmp_path / "hero_image"
    folder.mkdir()
    old = time.time() - STALE_TEMP_SECONDS - 60
    stale, young, other = (
        folder / n for n in (".A.png.0a1b2c.tmp", ".A.png.3d4e5f.tmp", ".B.png.0a1b2c.tmp")
    )
    for path in (stale, young, other):
        path.write_bytes(b"partial")
    for path in (stale, other):
        os.utime(path, (old, old))
    store.write_bytes("hero_image/A.png", b"whole")
    assert sorted(p.name for p in folder.iterdir()) == [".A.png.3d4e5f.tmp", ".B.png.0a1b2c.tmp", "A.png"]
    assert store.list() == ["hero_image/A.png"]


def test_local_etag_changes_on_a_rewrite_within_one_timestamp_tick(tmp_path: Path) -> None:
    # Many file systems stamp mtimes from a coarse clock (ms or jiffies): a same-size rewrite at once can
    # keep the mtime. Simulate it; the write's new file (inode) must still give a new etag.
    store = LocalStore(tmp_path)
    store.write_bytes("inbox/A.json", b'{"prompt": "one"}')
    before = store.list_etags()["inbox/A.json"]
    mtime_ns = (tmp_path / "inbox" / "A.json").stat().st_mtime_ns
    store.write_bytes("inbox/A.json", b'{"prompt": "uno"}')
    os.utime(tmp_path / "inbox" / "A.json", ns=(mtime_ns, mtime_ns))
    assert store.list_etags()["inbox/A.json"] != before


def test_local_url_is_the_path(tmp_path: Path) -> None:
    assert LocalStore(tmp_path).url("video/A.mp4") == str(tmp_path.resolve() / "video" / "A.mp4")


def test_open_store_folder_is_local(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "data"))
    assert isinstance(store, LocalStore)
    store.write_bytes("mask/A.png", b"m")
    assert (tmp_path / "data" / "mask" / "A.png").read_bytes() == b"m"


# --- S3Store -------------------------------------------------------------------------------------------


def test_s3_keys_live_under_the_prefix(s3_store: S3Store) -> None:
    s3_store.write_bytes("hero_image/A.png", b"x")
    sibling = S3Store(s3_store.bucket, "runs/xy", endpoint_url=s3_store.endpoint_url)
    sibling.write_bytes("hero_image/B.png", b"y")

    listed = s3_store.client.list_objects_v2(Bucket=s3_store.bucket)["Contents"]
    assert sorted(obj["Key"] for obj in listed) == ["runs/x/hero_image/A.png", "runs/xy/hero_image/B.png"]
    assert s3_store.list() == ["hero_image/A.png"]
    assert not s3_store.exists("hero_image/B.png")
    assert s3_store.url("hero_image/A.png") == f"s3://{s3_store.bucket}/runs/x/hero_image/A.png"


def test_s3_list_pages_past_1000_keys(s3_store: S3Store) -> None:
    keys = [f"frames/A/{i:05d}.png" for i in range(1001)]  # S3 returns at most 1000 keys per page
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3_store.write_bytes(key, b""), keys))
    assert s3_store.list("frames/A/") == keys


def test_s3_etag_is_the_listing_etag_and_size(s3_store: S3Store) -> None:
    s3_store.write_bytes("inbox/A.json", b'{"prompt": "one"}')
    etag = s3_store.list_etags("inbox/")["inbox/A.json"]
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key="runs/x/inbox/A.json")
    assert etag == head["ETag"].strip('"') + ":17"
    s3_store.write_bytes("inbox/A.json", b'{"prompt": "one"}')  # the same bytes again: S3 keeps the MD5
    assert s3_store.list_etags("inbox/") == {"inbox/A.json": etag}


def test_open_store_s3(s3_store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"s3://{s3_store.bucket}/runs/x/", endpoint_url=s3_store.endpoint_url)
    assert isinstance(store, S3Store)
    store.write_bytes("video/A.mp4", b"v")
    assert s3_store.read_bytes("video/A.mp4") == b"v"  # same bucket and prefix

    monkeypatch.setenv("PRODVID_STORE", f"s3://{s3_store.bucket}/runs/x")
    monkeypatch.setenv("PRODVID_S3_ENDPOINT_URL", s3_store.endpoint_url)
    assert open_store().list() == ["video/A.mp4"]


def test_s3_missing_bucket_is_storage_error(s3_endpoint: str) -> None:
    store = S3Store("prodvid-no-such-bucket", "runs/x", endpoint_url=s3_endpoint)
    operations = [
        store.list,
        lambda: store.read_bytes("a"),
        lambda: store.exists("a"),
        lambda: store.write_bytes("a", b""),
    ]
    for operation in operations:
        with pytest.raises(
            StorageError,
            match=r"'prodvid-no-such-bucket' at http://127\.0\.0\.1:\d+.*does not exist; create it",
        ):
            operation()


def test_s3_unreachable_endpoint_is_storage_error(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail at once instead of retrying a closed port
    store = S3Store("prodvid-any-bucket", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:9.*unreachable.*PRODVID_S3_ENDPOINT_URL"):
        store.exists("a")


def test_s3_rejected_credentials_are_storage_error(s3_endpoint: str) -> None:
    # s3_endpoint provides the dummy keys; a second server that checks keys (moto's IAM mode) turns them away.
    endpoint, stop = start_s3_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        store = S3Store("prodvid-any-bucket", endpoint_url=endpoint)
        with pytest.raises(StorageError, match="access denied.*AWS_ACCESS_KEY_ID"):
            store.write_bytes("a", b"")
    finally:
        stop()


def test_s3_repr_has_no_secrets(s3_store: S3Store) -> None:
    text = repr(s3_store)
    assert s3_store.bucket in text and s3_store.endpoint_url in text
    assert DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in text
    assert DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"] not in text


def test_s3_empty_bucket_name_is_rejected() -> None:
    with pytest.raises(StorageError, match="bucket name is empty"):
        open_store("s3://")


# --- S3 retries (the faults themselves: tests/test_s3_faults.py) ---------------------------------------


@pytest.fixture
def no_aws_retry_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    return monkeypatch


def test_s3_retries_default_to_standard_mode_and_bounded_attempts(no_aws_retry_env) -> None:
    config = S3Store("any-bucket", endpoint_url="http://127.0.0.1:9").client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS}
    assert (config.connect_timeout, config.read_timeout) == (5, 60)


def test_s3_retries_follow_the_aws_variables(no_aws_retry_env, tmp_path: Path) -> None:
    no_aws_retry_env.setenv("AWS_MAX_ATTEMPTS", "4")
    no_aws_retry_env.setenv("AWS_RETRY_MODE", "adaptive")
    retries = S3Store("any-bucket", endpoint_url="http://127.0.0.1:9").client.meta.config.retries
    assert retries == {"mode": "adaptive", "total_max_attempts": 4}

    no_aws_retry_env.delenv("AWS_MAX_ATTEMPTS")
    no_aws_retry_env.delenv("AWS_RETRY_MODE")
    (tmp_path / "config").write_text("[default]\nmax_attempts = 7\nretry_mode = legacy\n")
    no_aws_retry_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    retries = S3Store("any-bucket", endpoint_url="http://127.0.0.1:9").client.meta.config.retries
    assert retries == {"mode": "legacy", "total_max_attempts": 7}


@pytest.mark.parametrize(
    ("name", "value"),
    [("AWS_MAX_ATTEMPTS", "0"), ("AWS_MAX_ATTEMPTS", "many"), ("AWS_RETRY_MODE", "fast")],
)
def test_s3_retry_settings_that_cannot_work_are_refused_by_name(no_aws_retry_env, name, value) -> None:
    no_aws_retry_env.setenv(name, value)
    with pytest.raises(StorageError, match=f"{name}.*must be.*{value}"):
        open_store("s3://any-bucket/x")


@pytest.mark.parametrize(
    ("key", "sku"),
    [
        ("frames/A.1/world.png", "A.1"),
        ("frames/A/", "A"),
        ("hero_image/A.1.png", "A.1"),
        ("inbox/B-2.json", "B-2"),
        ("video/V.mp4", "V"),
        ("frames/A", None),  # a prefix of many SKUs' folders
        ("inbox/", None),
        ("sensors/inbox_sensor/x.json", None),
        ("a", None),
    ],
)
def test_sku_of_a_key(key: str, sku: str | None) -> None:
    assert sku_of(key) == sku


def test_s3_errors_name_the_sku_and_the_key(s3_endpoint: str) -> None:
    store = S3Store("prodvid-no-such-bucket", "runs/x", endpoint_url=s3_endpoint)
    key = "s3://prodvid-no-such-bucket/runs/x/frames/MUG-1/world.png"
    with pytest.raises(StorageError, match=rf"^SKU MUG-1: cannot write {key} \(bucket"):
        store.write_bytes("frames/MUG-1/world.png", b"")


@pytest.mark.parametrize("where", [0.05, 0.5, 0.95], ids=["in-headers", "mid-body", "end-of-body"])
def test_s3_get_cut_off_midway_is_made_again(s3_store: S3Store, where: float) -> None:
    # botocore hands over an object's body unread, and reads a 404's body outside its retry loop: a cut
    # there reached the caller as urllib3's ProtocolError before S3Store made the GET again.
    data = os.urandom(100_000)
    s3_store.write_bytes("frames/A/world.png", data)
    endpoint = s3_store.endpoint_url
    script = [("reset_response", where), (None, 0.0)] * 2  # each GET's first response cut, the next whole
    with FaultProxy(endpoint, seed=0, rates={}, script=script) as proxy:
        store = S3Store(s3_store.bucket, "runs/x", endpoint_url=proxy.url)
        with pytest.raises(FileNotFoundError):
            store.read_bytes("frames/A/manifest.json")
        assert store.read_bytes("frames/A/world.png") == data
    assert proxy.faults["reset_response"] == 2 and proxy.requests == 4
