"""The inbox contract, read: `inbox/<SKU>.{png,jpg,jpeg,webp}` + `inbox/<SKU>.json` (the brief, written last).

Plain functions over the core `ObjectStore`, no Dagster: the sensor scans the inbox with them and the assets
find a SKU's photo and brief with them. Nothing here writes to or deletes from the inbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prodvid_core import layout
from prodvid_core.brief import Brief, decode_brief, parse_brief
from prodvid_core.errors import InvalidBriefError, InvalidInputError, ProdvidError, validate_sku
from prodvid_core.storage import INBOX_PREFIX, ObjectStore

__all__ = ["Entry", "Scan", "scan", "photo_key", "read_brief", "brief_with"]


@dataclass(frozen=True)
class Entry:
    """A SKU whose photo and brief are both in the inbox and valid."""

    sku: str
    photo_key: str
    brief: Brief


@dataclass
class Scan:
    """What the inbox holds: ready SKUs, entries rejected (key → why), SKUs still waiting for their brief."""

    ready: dict[str, Entry] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)


def _split(key: str) -> tuple[str, str]:
    name = key[len(INBOX_PREFIX) :]
    stem, dot, suffix = name.rpartition(".")
    return (stem, f".{suffix.lower()}") if dot else (name, "")


def scan(store: ObjectStore) -> Scan:
    """List `inbox/` and sort every entry into ready, rejected (with the reason) or waiting."""
    photos: dict[str, list[str]] = {}
    briefs: dict[str, str] = {}
    result = Scan()
    for key in store.list(INBOX_PREFIX):
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
            briefs[stem] = key
        else:
            photos.setdefault(stem, []).append(key)
    for sku, brief_key in sorted(briefs.items()):
        found = photos.get(sku, [])
        if len(found) != 1:
            why = "no photo" if not found else f"{len(found)} photos ({', '.join(found)}); keep one"
            result.rejected[brief_key] = (
                f"SKU {sku}: {why} next to the brief (inbox/{sku}.png, .jpg or .webp)."
            )
            continue
        try:
            brief = parse_brief(store.read_bytes(brief_key), sku=sku)
        except ProdvidError as e:
            result.rejected[brief_key] = str(e)
            continue
        result.ready[sku] = Entry(sku=sku, photo_key=found[0], brief=brief)
    result.waiting = sorted(set(photos) - set(briefs))
    return result


def photo_key(store: ObjectStore, sku: str) -> str:
    """The one photo of `sku` in the inbox."""
    found = [
        key
        for key in store.list(f"{INBOX_PREFIX}{validate_sku(sku)}.")
        if _split(key)[0] == sku and _split(key)[1] in layout.PHOTO_SUFFIXES
    ]
    if len(found) != 1:
        what = "no photo" if not found else f"{len(found)} photos ({', '.join(found)})"
        raise InvalidInputError(
            f"SKU {sku}: the inbox holds {what}; put exactly one of inbox/{sku}.png, .jpg, .jpeg or .webp."
        )
    return found[0]


def read_brief(store: ObjectStore, sku: str) -> dict:
    """The brief of `sku` as a dict (not yet validated); empty if the inbox has none."""
    try:
        data = store.read_bytes(layout.inbox_brief(sku))
    except FileNotFoundError:
        return {}
    return decode_brief(data, sku=sku, what=f"inbox/{sku}.json")


def brief_with(store: ObjectStore, sku: str, **overrides) -> Brief:
    """The inbox brief of `sku` with the `overrides` that are not None (run config) applied, validated."""
    data = read_brief(store, sku)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data.get("prompt"):
        raise InvalidBriefError(
            f"SKU {sku}: no prompt: write inbox/{sku}.json with a 'prompt', "
            "or set `prompt` in the run config of hero_image."
        )
    return parse_brief(data, sku=sku)
