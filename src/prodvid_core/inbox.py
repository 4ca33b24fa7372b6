"""The inbox contract, read: `inbox/<SKU>.{png,jpg,jpeg,webp}` + `inbox/<SKU>.json` (the brief, written last).

Plain functions over the core `ObjectStore`, no Dagster: the sensor scans the inbox with them and the assets
find a SKU's photo and brief with them. Nothing here writes to or deletes from the inbox (`photo_drop` puts a
photo named in a run's config there). Errors name the inbox as the store shows it (`store.url`), e.g.
`s3://bucket/prefix/inbox/SKU-1.png`, so a person knows which inbox is meant.

`scan` is polled (every 15 s by the sensor) over inboxes of thousands of SKUs, so it reads as little as it
can: one listing of `inbox/` with each key's ETag, then only the briefs whose ETag differs from what the
previous scan saw (`Seen`, which the caller keeps: the sensor in the store, through `inbox_state`). Photos are
never read by a scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from prodvid_core import layout
from prodvid_core.brief import Brief, decode_brief, parse_brief
from prodvid_core.errors import InvalidBriefError, InvalidInputError, ProdvidError, validate_sku
from prodvid_core.storage import INBOX_PREFIX, ObjectStore

__all__ = ["Entry", "Seen", "Scan", "scan", "photos", "photo_key", "read_brief", "brief_with"]


@dataclass(frozen=True)
class Entry:
    """A SKU whose photo and brief are both in the inbox and valid."""

    sku: str
    photo_key: str
    brief: Brief


@dataclass(frozen=True)
class Seen:
    """What a scan learned from the bytes of one brief, so that the next scan need not read them again.

    `stamp` identifies the brief's ETag in the listing made before the read (a 12-hex digest, as it is kept
    per SKU in the sensor's state object): a brief rewritten between that listing and the read is read once
    more by the next scan, never missed. Exactly one of `checksum` (a valid brief, `Brief.checksum()`) and
    `error` (why it did not validate) is set.
    """

    stamp: str
    checksum: str | None = None
    error: str | None = None


@dataclass
class Scan:
    """What the inbox holds.

    `ready` are the SKUs with a photo and a valid brief that is new or changed since the `seen` given to
    `scan` (every ready SKU when `seen` is empty); `unchanged` the ready SKUs whose brief is as seen
    before. `rejected` maps a bad entry's key to why, `waiting` lists SKUs whose photo waits for its brief.
    `seen` is what to give the next scan, and `reads` are the briefs this scan read.
    """

    ready: dict[str, Entry] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    seen: dict[str, Seen] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)


def _split(key: str) -> tuple[str, str]:
    name = key[len(INBOX_PREFIX) :]
    stem, dot, suffix = name.rpartition(".")
    return (stem, f".{suffix.lower()}") if dot else (name, "")


def _stamp(etag: str) -> str:
    """A short digest of an ETag (48 bits: a changed brief passes for unchanged with chance 2^-48)."""
    return hashlib.sha256(etag.encode()).hexdigest()[:12]


def scan(store: ObjectStore, seen: Mapping[str, Seen] | None = None) -> Scan:
    """List `inbox/` once and sort every entry into ready, unchanged, rejected (with the reason) or waiting.

    A brief is read only when it has exactly one photo and its ETag differs from `seen[sku]`; an unchanged
    brief that was rejected stays rejected with the reason `seen` holds. So a scan of an inbox where nothing
    changed costs one listing (a LIST request per 1,000 keys on S3) and no reads.

    Args:
        seen: `Scan.seen` of the previous scan; empty or None reads every brief that has its photo.

    Example:
        >>> first = scan(store)  # doctest: +SKIP
        >>> later = scan(store, first.seen)  # reads only the briefs rewritten since
    """
    seen = seen or {}
    photos: dict[str, list[str]] = {}
    briefs: dict[str, tuple[str, str]] = {}
    result = Scan()
    # 1. One listing: sort keys into photos and briefs by name, rejecting what cannot be an entry
    for key, etag in store.list_etags(INBOX_PREFIX).items():
        stem, suffix = _split(key)
        if "/" in stem:
            result.rejected[key] = "a sub-folder of the inbox: put files directly in inbox/."
            continue
        if suffix not in (*layout.PHOTO_SUFFIXES, ".json"):
            allowed = ", ".join([*layout.PHOTO_SUFFIXES, ".json"])
            result.rejected[key] = f"unknown file type {suffix or '(none)'!r}: use {allowed}."
            continue
        try:
            validate_sku(stem)
        except ProdvidError as e:
            result.rejected[key] = str(e)
            continue
        if suffix == ".json":
            briefs[stem] = (key, etag)
        else:
            photos.setdefault(stem, []).append(key)
    # 2. Each brief with its one photo: read it if its ETag changed, else take what was seen
    for sku, (brief_key, etag) in sorted(briefs.items()):
        found = photos.get(sku, [])
        if len(found) != 1:
            why = "no photo" if not found else f"{len(found)} photos ({', '.join(found)}); keep one"
            result.rejected[brief_key] = (
                f"SKU {sku}: {why} next to the brief (inbox/{sku}.png, .jpg or .webp)."
            )
            continue
        before, stamp = seen.get(sku), _stamp(etag)
        if before is not None and before.stamp == stamp:
            result.seen[sku] = before
            if before.error is not None:
                result.rejected[brief_key] = before.error
            else:
                result.unchanged.append(sku)
            continue
        result.reads.append(brief_key)
        try:
            brief = parse_brief(store.read_bytes(brief_key), sku=sku)
        except ProdvidError as e:
            result.seen[sku] = Seen(stamp, error=str(e))
            result.rejected[brief_key] = str(e)
            continue
        result.seen[sku] = Seen(stamp, checksum=brief.checksum())
        if before is not None and before.checksum == brief.checksum():
            result.unchanged.append(sku)  # rewritten, same content (or only its formatting changed)
        else:
            result.ready[sku] = Entry(sku=sku, photo_key=found[0], brief=brief)
    result.waiting = sorted(set(photos) - set(briefs))
    return result


def photos(store: ObjectStore, sku: str) -> list[str]:
    """The keys of every photo of `sku` in the inbox (one, when the inbox is as it should be)."""
    return [
        key
        for key in store.list(f"{INBOX_PREFIX}{validate_sku(sku)}.")
        if _split(key)[0] == sku and _split(key)[1] in layout.PHOTO_SUFFIXES
    ]


def photo_key(store: ObjectStore, sku: str) -> str:
    """The one photo of `sku` in the inbox."""
    found = photos(store, sku)
    if len(found) != 1:
        what = "no photo" if not found else f"{len(found)} photos ({', '.join(map(store.url, found))})"
        png = store.url(layout.inbox_photo(sku, ".png"))
        raise InvalidInputError(
            f"SKU {sku}: the inbox holds {what}; put exactly one of {png}, .jpg, .jpeg or .webp."
        )
    return found[0]


def read_brief(store: ObjectStore, sku: str) -> dict:
    """The brief of `sku` as a dict (not yet validated); empty if the inbox has none."""
    try:
        data = store.read_bytes(layout.inbox_brief(sku))
    except FileNotFoundError:
        return {}
    return decode_brief(data, sku=sku, what=store.url(layout.inbox_brief(sku)))


def brief_with(store: ObjectStore, sku: str, *, require_prompt: bool = True, **overrides) -> Brief:
    """The inbox brief of `sku` with the `overrides` that are not None (run config) applied, validated.

    The video's length is one setting given as `num_frames` or `seconds`: an override of either replaces
    both of the brief's. `require_prompt=False` is for a step that needs only the brief's other fields (the
    canvas, its format and placement), when the prompt may still come from hero_image's run config.
    """
    data = read_brief(store, sku)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if {"num_frames", "seconds"} & overrides.keys():
        data = {k: v for k, v in data.items() if k not in ("num_frames", "seconds")}
    data.update(overrides)
    if not data.get("prompt") and require_prompt:
        raise InvalidBriefError(
            f"SKU {sku}: no prompt: write {store.url(layout.inbox_brief(sku))} with a 'prompt', "
            "or set `prompt` in the run config of expanded_canvas."
        )
    return parse_brief(data, sku=sku, require_prompt=require_prompt)
