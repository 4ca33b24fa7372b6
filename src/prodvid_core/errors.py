"""One exception family for every user-facing problem.

A `ProdvidError` message names the SKU, the input at fault and what to do about it, so the CLI can print it
as a single line and Dagster can show it as the step's failure reason without a traceback hunt.
"""

from __future__ import annotations

import re

__all__ = [
    "ProdvidError",
    "InvalidSkuError",
    "InvalidInputError",
    "InvalidBriefError",
    "ModelUnavailableError",
    "GenerationError",
    "SettingsError",
    "StorageError",
    "IntegrityError",
    "validate_sku",
]

_SKU_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ProdvidError(Exception):
    """A problem a user can fix; the message says which SKU, which input and how."""


class InvalidSkuError(ProdvidError):
    """A SKU id that is not safe to use as a file name."""


class InvalidInputError(ProdvidError):
    """A product photo that cannot be used (not an image, truncated, empty, no product found, ...)."""


class InvalidBriefError(ProdvidError):
    """A brief (`inbox/<SKU>.json`) with an unknown or ill-typed field."""


class ModelUnavailableError(ProdvidError):
    """A model that cannot be loaded (not downloaded, no network, not a diffusers inpainting checkpoint)."""


class GenerationError(ProdvidError):
    """The model kept producing unusable output (NaN, blank or constant) after its retries."""


class SettingsError(ProdvidError):
    """A setting (flag, env var or Dagster config) that cannot work: no steps, a canvas off the 8-px grid."""


class StorageError(ProdvidError):
    """The object store refused an operation or is misconfigured."""


class IntegrityError(ProdvidError):
    """A stored artifact that does not match its record (damaged or edited by hand); making it again
    fixes it."""


def validate_sku(sku: str) -> str:
    """Return `sku` unchanged if it is a safe id, else raise `InvalidSkuError`.

    SKUs become path segments and S3 keys, so anything that could escape a folder (`/`, `..`), break a
    listing (spaces, commas) or exceed common key limits is rejected before it touches a path.
    """
    if not isinstance(sku, str) or not _SKU_PATTERN.fullmatch(sku) or ".." in sku:
        raise InvalidSkuError(
            f"SKU {sku!r} is not a valid id: use 1-64 characters from letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (no '/', '..', spaces or commas)."
        )
    return sku
