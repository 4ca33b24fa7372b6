"""What the inbox scans remember between polls, kept in the store so that the poller's cursor stays small.

The Dagster inbox sensor polls every 15 s and gives each `inbox.scan` the `Seen` records of the previous one,
so that only briefs rewritten since are read. Those records are about 45 bytes a SKU, and Dagster stores a
sensor's cursor in every tick row, changed or not: kept in the cursor, 10,000 SKUs would cost some 2.6 GB of
tick rows a day. So the records live in one JSON object in the store, and the cursor only names it:

    cursor:  {"state": "20250612T101530.123456Z-<sha256>", "seen": 10000, "rejected": 3}
    object:  sensors/inbox_sensor/20250612T101530.123456Z-<sha256>.json
             {"version": 1, "briefs": {"MUG-1": "3f9a0c1d2e4b:0123456789abcdef", "TYPO-4": "77aa0c1d2e4b:"},
              "rejected": {"inbox/TYPO-4.json": "SKU TYPO-4: unknown field 'promt' ..."}}

An object is written once and never changed: its name holds the sha256 of its bytes, and a scan that changed
nothing writes nothing and keeps the cursor as it was. That is what makes a crash or a second evaluation
harmless. A tick writes its object before Dagster commits its cursor; if Dagster never commits it (the
daemon died, or it was a preview), the committed cursor still names the previous object, whole and unchanged,
and the next tick reads again what changed since then, asks for the same run keys, and Dagster skips those it
already made. Overwriting one fixed key instead would let an uncommitted tick's state pass for the committed
one, and a brief changed during that tick would never run.

The name starts with the UTC time of the write, so a listing sorted by name is oldest first: after a write,
all but the newest `KEEP` objects are deleted, never the one just written nor the one the cursor named.

A cursor that names nothing usable (empty: a new sensor, or a person reset it; not JSON; an object that is
missing, corrupt or does not match its digest) starts from nothing: every brief is read, which is correct,
only slower. So does a cursor of an earlier prodvid, which held the records itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from prodvid_core import layout
from prodvid_core.inbox import Scan, Seen
from prodvid_core.storage import INBOX_PREFIX, ObjectStore

__all__ = ["KEEP", "VERSION", "Loaded", "Saved", "load", "save", "encode", "decode"]

VERSION = 1
KEEP = 8
"""State objects kept after a write: a few, so that the object a committed cursor names outlives the writes
of evaluations whose cursor Dagster never committed (a daemon crash, "Test sensor" in the UI)."""

_NAME = re.compile(r"(?P<written>\d{8}T\d{6}\.\d{6}Z)-(?P<digest>[0-9a-f]{64})")
_START_OVER = "every brief in the inbox is read, and Dagster skips each run key it has already run"


@dataclass(frozen=True)
class Loaded:
    """The scan state a cursor refers to, ready for `inbox.scan`.

    `origin` says where it came from: `"state"` (the object the cursor names), `"empty"` (no cursor, or one
    that says the inbox was empty) or `"lost"` (a cursor that names nothing usable: not this prodvid's, or
    an object that is missing, corrupt or does not match its digest; worth a warning). `note` says it in
    words for the log, None for `"state"`. `name` and `digest` identify the object, so that `save` can tell
    an unchanged state and write nothing.
    """

    origin: Literal["state", "empty", "lost"]
    seen: dict[str, Seen] = field(default_factory=dict)
    name: str | None = None
    digest: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Saved:
    """The cursor to keep for the next scan, and what saving cost: the object `key` (None for an empty
    state), whether it was `written` now, its `size` in bytes, and the older objects `pruned`."""

    cursor: str
    key: str | None
    written: bool
    size: int
    pruned: list[str] = field(default_factory=list)


def encode(seen: Mapping[str, Seen], rejected: Mapping[str, str]) -> bytes:
    """The state as canonical JSON bytes (sorted keys, no spaces): the same state, the same bytes and digest.

    Per SKU `"<stamp>:<checksum>"`, with an empty checksum for a brief rejected for its content, whose reason
    is the one under `rejected` (keyed by the brief's key, as `Scan.rejected` is).
    """
    briefs = {sku: f"{s.stamp}:{s.checksum or ''}" for sku, s in seen.items()}
    state = {"version": VERSION, "briefs": briefs, "rejected": dict(rejected)}
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[dict[str, Seen], dict[str, str]]:
    """`encode`'s bytes back as `(seen, rejected)`; a `ValueError` if they are not a state of this version."""
    state = json.loads(data)
    if (
        not isinstance(state, dict)
        or state.get("version") != VERSION
        or not {"briefs", "rejected"} <= set(state)
    ):
        raise ValueError(f"not a version {VERSION} inbox state")
    return _records(state["briefs"], state["rejected"]), state["rejected"]


def load(store: ObjectStore, cursor: str | None) -> Loaded:
    """The `Seen` records that `cursor` (from `save`) refers to.

    Never raises for a bad cursor or state object: it starts from nothing and says why in `note`. A store
    that cannot be reached still raises its `StorageError`, as the inbox listing would.
    """
    # 1. The cursor: empty, or ours
    if not cursor:
        return Loaded("empty", note=f"no cursor (a new sensor, or its cursor was reset): {_START_OVER}")
    try:
        parsed = json.loads(cursor)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or "state" not in parsed:
        return Loaded("lost", note=f"cursor {cursor[:80]!r} is not one of prodvid's: {_START_OVER}")
    name = parsed["state"]
    if name is None:
        return Loaded("empty")  # an empty inbox was seen: nothing to remember
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return Loaded("lost", note=f"cursor names no state object ({name!r}): {_START_OVER}")

    # 2. The object it names, whole and matching its digest
    key = layout.inbox_state(name)
    try:
        data = store.read_bytes(key)
    except FileNotFoundError:
        return Loaded("lost", note=f"state object {store.url(key)} is missing: {_START_OVER}")
    if hashlib.sha256(data).hexdigest() != match["digest"]:
        return Loaded("lost", note=f"state object {store.url(key)} does not match its digest: {_START_OVER}")
    try:
        seen, _ = decode(data)
    except ValueError as e:
        return Loaded("lost", note=f"state object {store.url(key)} is not understood ({e}): {_START_OVER}")
    return Loaded("state", seen, name=name, digest=match["digest"])


def save(store: ObjectStore, scan: Scan, loaded: Loaded, *, keep: int = KEEP) -> Saved:
    """Keep `scan`'s state for the next scan and return the cursor that names it.

    The state object is written only when the state differs from `loaded`'s (a scan where nothing changed
    writes nothing), then all but the newest `keep` objects are deleted. An empty state (an empty inbox) is
    not written at all: the cursor says so, and the next scan starts from nothing, which costs nothing.
    """
    if not scan.seen and not scan.rejected:
        return Saved(cursor=_cursor(None, scan), key=None, written=False, size=0)
    data = encode(scan.seen, scan.rejected)
    digest = hashlib.sha256(data).hexdigest()
    if digest == loaded.digest and loaded.name is not None:
        key = layout.inbox_state(loaded.name)
        return Saved(cursor=_cursor(loaded.name, scan), key=key, written=False, size=len(data))
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{digest}"
    key = layout.inbox_state(name)
    store.write_bytes(key, data)
    pruned = _prune(store, keep=keep, spare={name, loaded.name})
    return Saved(cursor=_cursor(name, scan), key=key, written=True, size=len(data), pruned=pruned)


def _cursor(name: str | None, scan: Scan) -> str:
    """About 120 bytes whatever the inbox holds: the object's name, and counts a person reads in the UI."""
    return json.dumps({"state": name, "seen": len(scan.seen), "rejected": len(scan.rejected)})


def _records(briefs: Any, rejected: Any) -> dict[str, Seen]:
    """The `Seen` records of a state object's two fields.

    Both come from JSON a person may have edited, hence `Any` and a `ValueError` if either is not
    `{str: str}`.
    """
    for what, mapping in (("briefs", briefs), ("rejected", rejected)):
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ValueError(f"{what!r} is not an object of strings")
    seen = {}
    for sku, value in briefs.items():
        stamp, _, checksum = value.rpartition(":")
        if checksum:
            seen[sku] = Seen(stamp, checksum=checksum)
        elif f"{INBOX_PREFIX}{sku}.json" in rejected:
            seen[sku] = Seen(stamp, error=rejected[f"{INBOX_PREFIX}{sku}.json"])
    return seen


def _prune(store: ObjectStore, *, keep: int, spare: set[str | None]) -> list[str]:
    """Delete all but the newest `keep` state objects (by name: the time of the write), sparing `spare`.

    Only names this module writes are touched; anything else a person put in the folder stays.
    """
    names = [
        key[len(layout.INBOX_STATE_PREFIX) : -len(".json")]
        for key in store.list(layout.INBOX_STATE_PREFIX)
        if key.endswith(".json")
    ]
    ours = sorted(name for name in names if _NAME.fullmatch(name))
    doomed = [name for name in ours[: max(len(ours) - keep, 0)] if name not in spare]
    for name in doomed:
        store.delete(layout.inbox_state(name))
    return [layout.inbox_state(name) for name in doomed]
