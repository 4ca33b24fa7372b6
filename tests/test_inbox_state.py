"""The inbox scans' memory in the store (`inbox_state`), on a local folder and on the real S3 test server:
what a cursor names, when an object is written, which are pruned, and that no cursor or object crashes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from prodvid_core import inbox, inbox_state, layout
from prodvid_core.storage import LocalStore, ObjectStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """An inbox of three good SKUs and one bad brief."""
    store = (
        LocalStore(tmp_path / "store") if request.param == "local" else request.getfixturevalue("s3_store")
    )
    for sku in ("MUG-1", "VASE-2", "JAR-3"):
        store.write_bytes(f"inbox/{sku}.png", b"photo")
        store.write_bytes(f"inbox/{sku}.json", json.dumps({"prompt": f"{sku} on a table"}).encode())
    store.write_bytes("inbox/TYPO-4.png", b"photo")
    store.write_bytes("inbox/TYPO-4.json", b'{"promt": "a typo"}')
    return store


def state_keys(store: ObjectStore) -> list[str]:
    return store.list(layout.INBOX_STATE_PREFIX)


def test_the_cursor_names_an_object_that_gives_the_scan_back(store: ObjectStore) -> None:
    inbox_before = {k: store.read_bytes(k) for k in store.list("inbox/")}
    first = inbox.scan(store)
    saved = inbox_state.save(store, first, inbox_state.load(store, None))
    assert saved.written and state_keys(store) == [saved.key]
    cursor = json.loads(saved.cursor)
    assert cursor == {"state": cursor["state"], "seen": 4, "rejected": 1}
    assert saved.key == layout.inbox_state(cursor["state"])
    assert cursor["state"].endswith(hashlib.sha256(store.read_bytes(saved.key)).hexdigest())

    loaded = inbox_state.load(store, saved.cursor)
    assert (loaded.origin, loaded.note, loaded.name) == ("state", None, cursor["state"])
    assert loaded.seen == first.seen and loaded.seen["TYPO-4"].error is not None
    second = inbox.scan(store, loaded.seen)
    assert second.reads == [] and second.rejected == first.rejected

    # nothing changed: nothing written, the same cursor
    again = inbox_state.save(store, second, loaded)
    assert (again.written, again.cursor, again.key) == (False, saved.cursor, saved.key)
    assert state_keys(store) == [saved.key]
    assert {k: store.read_bytes(k) for k in store.list("inbox/")} == inbox_before  # the inbox untouched


def test_the_same_state_gives_the_same_bytes(store: ObjectStore) -> None:
    scan = inbox.scan(store)
    shuffled = dict(reversed(list(scan.seen.items())))
    assert inbox_state.encode(scan.seen, scan.rejected) == inbox_state.encode(shuffled, scan.rejected)
    assert inbox_state.decode(inbox_state.encode(scan.seen, scan.rejected)) == (scan.seen, scan.rejected)


def test_a_changed_state_is_a_new_object_and_the_old_ones_are_pruned(store: ObjectStore) -> None:
    loaded = inbox_state.load(store, None)
    first = inbox_state.save(store, inbox.scan(store), loaded)
    names = [first.key]
    loaded = inbox_state.load(store, first.cursor)
    for k in range(5):
        store.write_bytes("inbox/MUG-1.json", json.dumps({"prompt": f"take {k}"}).encode())
        saved = inbox_state.save(store, inbox.scan(store, loaded.seen), loaded, keep=3)
        assert saved.written and saved.key not in names
        names.append(saved.key)
        assert state_keys(store) == names[-3:]  # a name sorts by the time of its write
        assert saved.pruned == ([names[-4]] if len(names) > 3 else [])
        loaded = inbox_state.load(store, saved.cursor)

    # the object the cursor named is spared, however old; only names of state objects are touched
    store.write_bytes(f"{layout.INBOX_STATE_PREFIX}README.txt", b"a person's note")
    old = inbox_state.load(store, json.dumps({"state": names[-3].split("/")[-1][: -len(".json")]}))
    assert old.origin == "state"
    store.write_bytes("inbox/MUG-1.json", b'{"prompt": "once more"}')
    saved = inbox_state.save(store, inbox.scan(store, old.seen), old, keep=1)
    assert state_keys(store) == sorted([f"{layout.INBOX_STATE_PREFIX}README.txt", names[-3], saved.key])


def test_an_empty_inbox_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not-yet")
    saved = inbox_state.save(store, inbox.scan(store), inbox_state.load(store, None))
    assert (saved.written, saved.key, json.loads(saved.cursor)) == (
        False,
        None,
        {"state": None, "seen": 0, "rejected": 0},
    )
    assert not (tmp_path / "not-yet").exists()
    assert inbox_state.load(store, saved.cursor) == inbox_state.Loaded("empty")


def _written(store: ObjectStore) -> tuple[str, str]:
    """(cursor, key) of the inbox's state, saved."""
    saved = inbox_state.save(store, inbox.scan(store), inbox_state.load(store, None))
    assert saved.key is not None
    return saved.cursor, saved.key


@pytest.mark.parametrize(
    "cursor, words",
    [
        ("not json", "is not one of prodvid's"),
        ("[1, 2]", "is not one of prodvid's"),
        ('{"state": "../../inbox/MUG-1"}', "names no state object"),
        ('{"state": 7}', "names no state object"),
        ('{"briefs": [1]}', "is not one of prodvid's"),
        ('{"briefs": {"MUG-1": 3}}', "is not one of prodvid's"),
    ],
)
def test_a_cursor_that_is_not_ours_starts_over(store: ObjectStore, cursor: str, words: str) -> None:
    loaded = inbox_state.load(store, cursor)
    assert (loaded.origin, loaded.seen) == ("lost", {}) and words in loaded.note
    assert "every brief in the inbox is read" in loaded.note


@pytest.mark.parametrize("damage", ["deleted", "truncated", "edited", "not a state"])
def test_a_lost_state_object_starts_over_and_says_why(store: ObjectStore, damage: str) -> None:
    cursor, key = _written(store)
    data = store.read_bytes(key)
    if damage == "deleted":
        store.delete(key)
    elif damage == "truncated":
        store.write_bytes(key, data[: len(data) // 2])
    elif damage == "edited":
        store.write_bytes(key, data.replace(b'"version":1', b'"version":1 '))
    else:  # bytes that do match the digest in their name, but are not a state
        junk = b'{"version": 99}'
        name = json.loads(cursor)["state"].split("-")[0] + "-" + hashlib.sha256(junk).hexdigest()
        store.write_bytes(layout.inbox_state(name), junk)
        cursor = json.dumps({"state": name})
    loaded = inbox_state.load(store, cursor)
    assert (loaded.origin, loaded.seen) == ("lost", {})
    why = {"deleted": "is missing", "not a state": "not understood"}.get(damage, "does not match its digest")
    assert why in loaded.note and "state object" in loaded.note

    # the scan reads every brief again, and the next save writes a good object again
    scan = inbox.scan(store, loaded.seen)
    assert len(scan.reads) == 4
    saved = inbox_state.save(store, scan, loaded)
    assert saved.written and inbox_state.load(store, saved.cursor).seen == scan.seen


def test_a_cursor_of_an_earlier_format_starts_over(store: ObjectStore) -> None:
    """Cursors that held the records themselves (before the state object) are not read any more: the scan
    starts over, reading every brief, and Dagster skips the run keys it has already run."""
    scan = inbox.scan(store)
    briefs = {sku: f"{s.stamp}:{s.checksum or ''}" for sku, s in scan.seen.items()}
    checksums = {sku: s.checksum for sku, s in scan.seen.items() if s.checksum}
    for cursor in ({"briefs": briefs, "rejected": scan.rejected}, {"briefs": checksums}, checksums):
        loaded = inbox_state.load(store, json.dumps(cursor))
        assert (loaded.origin, loaded.seen) == ("lost", {}) and "not one of prodvid's" in loaded.note
        assert len(inbox.scan(store, loaded.seen).reads) == 4
