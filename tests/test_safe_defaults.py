"""Safe defaults (issue 9, item 6): what prodvid does without being told.

Stored files follow the umask; a write survives a power loss (the folder is fsynced after the rename);
nothing reaches outside the store root or the S3 prefix; servers listen on loopback; credentials appear in
no stored object, output or error; model folders with safetensors load only safetensors; `.env` is never
committed; the deploy image runs as a non-root user. Each test fails if its default is lost.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from prodvid_core import inbox, layout, models
from prodvid_core.errors import InvalidSkuError, ModelUnavailableError, StorageError
from prodvid_core.sample import sample_photo_bytes
from prodvid_core.storage import LocalStore, S3Store, open_store
from s3_server import DUMMY_AWS_ENV, start_s3_server
from sockets import is_loopback, listening_addresses

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
        check=True,
    )


# --- stored files follow the umask -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("umask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_stored_files_and_folders_follow_the_umask(
    tmp_path: Path, umask: int, file_mode: int, folder_mode: int
):
    # A process of its own: the umask is per process, and setting it here would race other threads.
    root = tmp_path / "store"
    _run_python(
        f"import os; os.umask({umask:#o}); from prodvid_core.storage import LocalStore; "
        f"s = LocalStore({str(root)!r}); s.write_bytes('video/A.mp4', b'v'); "
        "s.write_bytes('video/A.mp4', b'w')"
    )
    assert stat.S_IMODE((root / "video" / "A.mp4").stat().st_mode) == file_mode
    assert stat.S_IMODE((root / "video").stat().st_mode) == folder_mode
    assert stat.S_IMODE(root.stat().st_mode) == folder_mode
    assert [p.name for p in (root / "video").iterdir()] == ["A.mp4"]  # no temp file left


# --- the folder is fsynced after the rename ----------------------------------------------------------------


def test_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path: Path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append((f"fsync {kind}", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store = LocalStore(tmp_path / "store")
    store.write_bytes("frames/A/00000.png", b"first")  # makes store/, frames/ and frames/A/
    root = str(store.root)
    made = [
        ("fsync folder", str(tmp_path)),  # store/ made: its entry is in tmp_path
        ("fsync folder", root),
        ("fsync folder", f"{root}/frames"),
    ]
    assert events[:3] == made
    assert events[3][0] == "fsync file" and events[3][1].startswith(f"{root}/frames/A/.00000.png.")
    assert events[4:] == [("replace", f"{root}/frames/A/00000.png"), ("fsync folder", f"{root}/frames/A")]

    events.clear()
    store.write_bytes("frames/A/00001.png", b"second")  # folders exist: one file fsync, one folder fsync
    assert [e[0] for e in events] == ["fsync file", "replace", "fsync folder"]


# --- nothing reaches outside the store root or the S3 prefix -----------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the store, with a file a link could point at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.png").write_bytes(b"not yours")
    return folder


def test_a_link_out_of_the_root_is_not_followed(tmp_path: Path, outside: Path):
    store = LocalStore(tmp_path / "store")
    store.write_bytes("inbox/A.json", b'{"prompt": "a bottle"}')
    (store.root / "inbox" / "A.png").symlink_to(outside / "secret.png")
    (store.root / "hero_image").symlink_to(outside, target_is_directory=True)

    refused = f"'inbox/A.png' is a symbolic link .* outside the store root '{re.escape(str(store.root))}'"
    with pytest.raises(StorageError, match=refused):
        store.read_bytes("inbox/A.png")
    with pytest.raises(StorageError, match=refused):
        store.exists("inbox/A.png")
    with pytest.raises(StorageError, match="'hero_image/A.png' is a symbolic link"):
        store.write_bytes("hero_image/A.png", b"overwritten?")
    with pytest.raises(StorageError, match="'hero_image' is a symbolic link"):
        store.list("hero_image/")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"]
    assert (outside / "secret.png").read_bytes() == b"not yours"
    assert store.url("inbox/A.png") == str(store.root / "inbox" / "A.png")  # naming it is fine


def test_a_link_inside_the_root_is_followed(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    store.write_bytes("uploads/bottle.png", b"photo")
    (store.root / "inbox").mkdir()
    (store.root / "inbox" / "A.png").symlink_to(store.root / "uploads" / "bottle.png")
    assert store.read_bytes("inbox/A.png") == b"photo"
    assert "inbox/A.png" in store.list("inbox/")


def test_inbox_scan_reports_a_brief_linked_out_of_the_root(tmp_path: Path, outside: Path):
    store = LocalStore(tmp_path / "store")
    store.write_bytes("inbox/A.png", sample_photo_bytes())
    (outside / "brief.json").write_text('{"prompt": "a bottle"}')
    (store.root / "inbox" / "A.json").symlink_to(outside / "brief.json")
    found = inbox.scan(store)
    assert not found.ready
    assert re.search(
        r"'inbox/A.json' is a symbolic link .* outside the store root", found.rejected["inbox/A.json"]
    )


def test_cli_inbox_refuses_a_photo_linked_out_of_the_root(tmp_path: Path, outside: Path):
    store = LocalStore(tmp_path / "store")
    store.write_bytes("inbox/A.json", b'{"prompt": "a bottle on a table"}')
    (store.root / "inbox" / "A.png").symlink_to(outside / "secret.png")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    proc = subprocess.run(
        [sys.executable, "-m", "prodvid_core.cli", "inbox", "--store", str(store.root), "--preset", "tiny"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert re.search(r"'inbox/A.png' is a symbolic link .* outside the store root", proc.stderr)
    assert "Traceback" not in proc.stderr
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == before  # nothing written


@pytest.mark.parametrize("sku", ["..", "../A", "A/../../B", "/etc/passwd", "A/B", ".hidden", "A\\..\\B"])
def test_sku_ids_cannot_name_a_path(sku: str):
    for key in (layout.inbox_brief, layout.hero_png, layout.video_mp4):
        with pytest.raises(InvalidSkuError):
            key(sku)


def test_s3_keys_stay_under_the_prefix(s3_store: S3Store):
    client, bucket = s3_store.client, s3_store.bucket
    client.put_object(Bucket=bucket, Key="runs/secret.png", Body=b"beside the prefix")
    client.put_object(Bucket=bucket, Key="runs/x/../secret.png", Body=b"a key that looks like a path")
    for key in ("../secret.png", "frames/../../secret.png", "/runs/secret.png"):
        with pytest.raises(StorageError, match="not a relative path"):
            s3_store.read_bytes(key)
        with pytest.raises(StorageError, match="not a relative path"):
            s3_store.write_bytes(key, b"")
    assert s3_store.list("../") == s3_store.list("..") == []
    with pytest.raises(StorageError, match="not a relative path"):
        S3Store(bucket, "runs/x/..", client=client)
    # S3 keys are flat names: one listing of the whole bucket shows nothing else was written or read
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["runs/secret.png", "runs/x/../secret.png"]


# --- servers listen on loopback ----------------------------------------------------------------------------


def test_the_s3_test_server_listens_on_loopback_only():
    endpoint, stop = start_s3_server()
    try:
        servers = [p for p in _children() if _cmdline(p).startswith(f"{sys.executable}\0-m\0moto.server")]
        listening = set().union(*(listening_addresses(pid) for pid in servers))
        assert ("127.0.0.1", int(endpoint.rpartition(":")[2])) in listening
        assert all(is_loopback(address) for address, _ in listening), listening
    finally:
        stop()


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "stat").read_text().rpartition(")")[2].split()[1] == me:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


# `dg dev` as the README runs it (no host) is started, and every socket of its process tree checked, in
# tests/dagster/test_dg_dev.py. Here: every file that starts or documents a server, outside deploy/ (a cluster
# image, which binds 0.0.0.0 inside its container on purpose, deploy/README.md).
SERVER_FILES = [
    "Makefile",
    "README.md",
    "dagster.yaml",
    "docs/dagster.md",
    ".ci/run",
    *(p.relative_to(REPO).as_posix() for p in sorted((REPO / "tests").rglob("*.py"))),
    *(p.relative_to(REPO).as_posix() for p in sorted((REPO / "benchmarks").glob("*.py"))),
]
# A host given to a server: -h/--host/--bind/-H, host=, listen_addresses=, or a bare all-interfaces address.
HOST_ARGUMENT = re.compile(
    r"""(?:(?<![\w-])(?:-h|-H|--host|--bind|--grpc-host)[\s"',]+|\bhost\s*=\s*["']?|listen_addresses=)"""
    r"""([\w.:\[\]*-]+)"""
)
ALL_INTERFACES = re.compile(r"0\.0\.0\.0|\[::\]|INADDR_ANY")


@pytest.mark.parametrize("name", SERVER_FILES)
def test_servers_started_or_documented_outside_deploy_bind_loopback(name: str):
    text = (REPO / name).read_text()
    if name == "tests/test_safe_defaults.py":
        return  # this file names the patterns it looks for
    assert not ALL_INTERFACES.search(text), f"{name} binds all interfaces"
    for host in HOST_ARGUMENT.findall(text):
        host = host.strip("[]")
        assert host in ("127.0.0.1", "localhost", "::1") or not re.fullmatch(r"[\d.:*]+", host), (
            f"{name}: a server bound to {host}"
        )


def test_deploy_binds_all_interfaces_only_inside_its_container():
    readme = (REPO / "deploy" / "README.md").read_text()
    assert "0.0.0.0" in readme and "inside its container" in readme


# --- credentials appear nowhere ----------------------------------------------------------------------------

SENTINEL_KEY = "AKIAPRODVIDSENTINEL7"
SENTINEL_SECRET = "prodvid/Sentinel+Secret/0123456789abcdefXYZ"
SENTINEL_TOKEN = "prodvid-sentinel-session-token-0123456789"
SENTINELS = (SENTINEL_KEY, SENTINEL_SECRET, SENTINEL_TOKEN)
SENTINEL_ENV = {
    **DUMMY_AWS_ENV,
    "AWS_ACCESS_KEY_ID": SENTINEL_KEY,
    "AWS_SECRET_ACCESS_KEY": SENTINEL_SECRET,
    "AWS_SESSION_TOKEN": SENTINEL_TOKEN,
}


def _leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return [s for s in SENTINELS if s in text]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prodvid_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )


@pytest.fixture
def sentinel_env(monkeypatch) -> dict[str, str]:
    for name, value in SENTINEL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return SENTINEL_ENV


def test_credentials_reach_no_stored_object_and_no_output(s3_endpoint: str, sentinel_env, tmp_path: Path):
    """A whole run against a real S3 server with sentinel credentials: no object it stored (sidecars,
    manifests, images, video), and nothing it printed, holds them."""
    bucket = f"prodvid-creds-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    photo = tmp_path / "bottle.png"
    photo.write_bytes(sample_photo_bytes())
    store = f"s3://{bucket}/runs"
    common = ["--store", store, "--s3-endpoint-url", s3_endpoint]
    tiny = ["--preset", "tiny", "--size", "256", "--steps", "1", "--num-frames", "3"]
    made = _cli(
        "generate", "A", "--image", str(photo), "--prompt", "a bottle", *common, *tiny, env=sentinel_env
    )
    assert made.returncode == 0, made.stderr
    assert not _leaks(made.stdout + made.stderr)
    objects = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert any(o["Key"].endswith(".json") for o in objects) and any(
        o["Key"].endswith(".mp4") for o in objects
    )
    for obj in objects:
        body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        assert not _leaks(body), obj["Key"]
        if obj["Key"].endswith(".json"):
            assert not _leaks(json.dumps(json.loads(body)))  # also as JSON escapes would write them
    assert not _leaks(repr(open_store(store, endpoint_url=s3_endpoint)))


@pytest.fixture(scope="module")
def auth_s3():
    """A moto server that checks credentials, with one bucket and one real access key (made while the first
    requests are still let through: the start-up probe, the bucket, the user, the key)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in DUMMY_AWS_ENV.items():
            mp.setenv(name, value)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        endpoint, stop = start_s3_server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
        try:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="prodvid-auth")
            iam = boto3.client("iam", endpoint_url=endpoint)
            iam.create_user(UserName="prodvid")
            key = iam.create_access_key(UserName="prodvid")["AccessKey"]["AccessKeyId"]
            yield endpoint, key
        finally:
            stop()


@pytest.mark.parametrize(
    ("key_id", "token", "code"),
    [
        ("unknown", True, "InvalidAccessKeyId"),
        ("known", False, "SignatureDoesNotMatch"),
        ("known", True, "InvalidToken"),
    ],
)
def test_denied_access_errors_hold_no_credentials(auth_s3, monkeypatch, key_id: str, token: bool, code: str):
    """Three refusals from a real server: an unknown key, a known key with a wrong secret, a bad session
    token. Every StorageError names the bucket and the fix, never the key, secret or token."""
    endpoint, real_key = auth_s3
    env = {**SENTINEL_ENV, "AWS_ACCESS_KEY_ID": SENTINEL_KEY if key_id == "unknown" else real_key}
    if not token:
        del env["AWS_SESSION_TOKEN"]
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = S3Store("prodvid-auth", "runs", endpoint_url=endpoint)
    for operation in (
        lambda: store.write_bytes("video/A.mp4", b"v"),
        lambda: store.read_bytes("video/A.mp4"),
        lambda: store.exists("video/A.mp4"),
        store.list,
    ):
        with pytest.raises(StorageError, match=f"access denied \\({code}\\)") as caught:
            operation()
        assert not _leaks(str(caught.value)) and not _leaks(repr(caught.value))
        assert real_key not in str(caught.value)
    if code != "InvalidAccessKeyId":
        return  # the CLI prints the same StorageError: once is enough (each run takes seconds)
    store_flags = ("--store", "s3://prodvid-auth/runs", "--s3-endpoint-url", endpoint)
    proc = _cli("inbox", *store_flags, "--preset", "tiny", env=env)
    assert proc.returncode == 2 and "access denied" in proc.stderr
    assert not _leaks(proc.stdout + proc.stderr) and "Traceback" not in proc.stderr


def test_credentials_in_a_url_are_refused_without_repeating_them(s3_endpoint: str):
    port = s3_endpoint.rpartition(":")[2]
    with pytest.raises(StorageError) as caught:
        open_store(
            "s3://prodvid-any", endpoint_url=f"http://{SENTINEL_KEY}:{SENTINEL_SECRET}@127.0.0.1:{port}"
        )
    assert f"'http://***@127.0.0.1:{port}'" in str(caught.value) and "AWS_ACCESS_KEY_ID" in str(caught.value)
    assert not _leaks(str(caught.value))
    with pytest.raises(StorageError, match="bucket name .* holds '@' or ':'") as caught:
        open_store(f"s3://{SENTINEL_KEY}:{SENTINEL_SECRET}@prodvid-any/runs", endpoint_url=s3_endpoint)
    assert not _leaks(str(caught.value))


# --- model folders with safetensors load only safetensors -------------------------------------------------


def _copy_preset(tmp_path: Path) -> Path:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(models.resolve_model(models.TINY_PRESET), folder)
    return folder


def _to_bin(weights: Path) -> None:
    """Replace a component's safetensors file by the same weights as a torch pickle (the older format)."""
    import torch
    from safetensors.torch import load_file

    name = "pytorch_model.bin" if weights.name == "model.safetensors" else "diffusion_pytorch_model.bin"
    torch.save(load_file(weights), weights.with_name(name))
    weights.unlink()


def test_a_folder_with_safetensors_never_reads_a_bin(tmp_path: Path):
    folder = _copy_preset(tmp_path)
    for weights in folder.glob("*/*.safetensors"):  # a pickle beside every safetensors file, unreadable
        name = "pytorch_model.bin" if weights.name == "model.safetensors" else "diffusion_pytorch_model.bin"
        weights.with_name(name).write_bytes(b"not a pickle: reading this fails the load")
    pipe = models.load_inpaint_pipeline(str(folder), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"


def test_a_folder_with_safetensors_refuses_a_component_only_in_bin(tmp_path: Path):
    # Mixed folders are where a pickle would slip in unnoticed: one component (the UNet) only as .bin.
    folder = _copy_preset(tmp_path)
    _to_bin(folder / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelUnavailableError, match="safetensors"):
        models.load_inpaint_pipeline(str(folder), device="cpu")


def test_a_folder_of_bin_files_only_still_loads(tmp_path: Path):
    folder = _copy_preset(tmp_path)
    for weights in list(folder.glob("*/*.safetensors")):
        _to_bin(weights)
    assert not list(folder.rglob("*.safetensors"))
    pipe = models.load_inpaint_pipeline(str(folder), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"


# --- .env and the deploy image ----------------------------------------------------------------------------


def test_dot_env_is_ignored_by_git():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for name in (".env", ".env.local"):
        proc = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO, timeout=30)
        assert proc.returncode == 0, f"{name} is not in .gitignore"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_deploy_image_runs_as_a_fixed_non_root_user():
    steps = _dockerfile_instructions()
    users = [i for i, (op, _) in enumerate(steps) if op == "USER"]
    assert users, "deploy/Dockerfile has no USER: the image would run as root"
    last_user = steps[users[-1]][1].split(":")[0]
    assert last_user.isdigit() and int(last_user) >= 1000, f"USER {last_user}: not a fixed uid of its own"
    last_run = max(i for i, (op, _) in enumerate(steps) if op == "RUN")
    assert users[-1] > last_run, "USER must come after the last RUN: only the install steps run as root"
    created = [arg for op, arg in steps if op == "RUN" and re.search(rf"useradd .*--uid {last_user}\b", arg)]
    assert created, f"user {last_user} is never created"
    # What the image writes at run time goes under a home that user owns.
    assert re.search(rf"chown -R {last_user}(:\d+)? (\S+)", created[0])
    home = re.search(r"--home-dir (\S+)", created[0])
    assert home and any(op == "ENV" and f"HOME={home[1]}" in arg for op, arg in steps[: users[-1]])
