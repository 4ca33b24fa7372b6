"""Seams: no visible step where a diffusion call's new pixels meet pixels painted earlier.

A model returns the pixels it was told to keep slightly changed (the VAE round trip shifts colours and
softens), and the pixels it paints carry the same change. Only the new pixels are kept, so, copied as they
are, they meet the old pixels with a step: old on one side, old + shift on the other. `correct` removes it
without touching an old pixel.

Method: membrane (Poisson) blending. The difference the model made, `old - out`, is known on the painted
pixels. Each new pixel next to painted ones takes the mean of their differences whole, so every pair of
neighbours across the boundary differs exactly as the model's own two pixels do; the correction of the other
new pixels is the smoothest field through those (harmonic: each pixel's correction is the mean of its four
neighbours'; zero flux at the window's edges). The result `out + correction` keeps the gradients the model
painted inside the new region (its texture and shading) and meets the old pixels without a step. Why this
and not a low-passed difference faded with distance:
- it picks the low frequencies by itself: a pattern of wavelength λ along the boundary (the fine VAE error,
  texture the model softened or did not reproduce) dies off as exp(-2π·distance/λ), within a pixel or two,
  spread over those pixels instead of left as a line; the broad colour shift is carried on. There is no
  blur radius or fade distance to tune, and no residual step where a low-passed difference misses the
  pixel-exact one;
- it does not fade the shift to zero: the far new pixels carry the model's shift as much as the near ones,
  and the next call takes them as old pixels, so a correction that faded away would let the colour drift
  by a shift per call; the membrane settles the far pixels on the boundary's mean shift instead;
- where new pixels lie between pixels of two earlier calls (or the hero image), it blends between the two
  measured differences.

The membrane is solved coarse to fine (a cascadic multigrid: on a pyramid of 2×2 blocks that keep the
boundary's differences, Gauss-Seidel sweeps on each level start from the coarser level's solution and
refine it near the boundary), in float32 numpy, over the bounding box of the new pixels only. At a window of
1300×2200 output px it takes a fraction of a second (`benchmarks/bench_frames.py` times it); the same
input gives the same bytes.

`measure_step` is the measurement: the mean step across the boundaries between pixels painted by different
calls, above the neighbour differences within each side (`tests/test_seams.py`, the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["correct", "measure_step", "Step"]

_COARSEST = 16  # solve directly at and below this many pixels a side
_DIRECT_SWEEPS = 200  # Gauss-Seidel sweeps there
_BAND = 8  # on every finer level, refine the pixels within this many pixels of a known one
_SWEEPS = 12  # with this many sweeps


def correct(out: np.ndarray, old: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """`out` with its new pixels (where `painted` is False) corrected to meet the painted ones without a step.

    Args:
        out: the model's output for the window, uint8 H×W×3, already at the window's size.
        old: the window's current pixels, uint8 H×W×3 (only the painted ones are read).
        painted: bool H×W, True where a pixel is already painted. Those pixels of the result are `out`'s,
            unchanged (the caller keeps `old` there); only the others are corrected.

    Returns:
        A new uint8 H×W×3 array.

    Example:
        >>> new = ~painted
        >>> world[new] = seams.correct(out, old, painted)[new]
    """
    # 1. Check inputs
    if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"`out` has to be uint8 H×W×3 but is {out.dtype} {out.shape}.")
    if old.shape != out.shape or old.dtype != np.uint8:
        raise ValueError(f"`old` has to be uint8 {out.shape} like `out` but is {old.dtype} {old.shape}.")
    if painted.shape != out.shape[:2] or painted.dtype != bool:
        raise ValueError(f"`painted` has to be bool {out.shape[:2]} but is {painted.dtype} {painted.shape}.")
    result = out.copy()
    new = ~painted
    if not painted.any() or not new.any():
        return result  # nothing painted to meet, or nothing new to correct

    # 2. Only the new pixels and their painted neighbours matter: the bounding box of the new pixels, plus one
    rows, cols = np.flatnonzero(new.any(axis=1)), np.flatnonzero(new.any(axis=0))
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, new.shape[0])
    left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, new.shape[1])
    box = slice(top, bottom), slice(left, right)
    known = painted[box]

    # 3. The difference the model made, on the painted pixels that meet new ones (the only ones read)
    h, w = known.shape
    difference = np.zeros((h, w, 3), np.float32)
    ys, xs = np.nonzero(known & _near(~known, 1))
    meet = (ys + top, xs + left)
    difference.reshape(h * w, 3)[ys * w + xs] = np.subtract(old[meet], out[meet], dtype=np.float32)

    # 4. The new pixels next to them take it whole; the membrane through those on the other new pixels
    edge = _take_neighbours_difference(difference, known)
    correction = _membrane(difference, known | edge)

    # 5. Apply it to the new pixels only, rounded and clipped to uint8
    ys, xs = np.nonzero(~known)
    fresh = (ys + top, xs + left)
    corrected = np.rint(out[fresh] + correction.reshape(h * w, 3)[ys * w + xs])
    result[fresh] = np.clip(corrected, 0, 255).astype(np.uint8)
    return result


def _take_neighbours_difference(difference: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Give each unknown pixel with known 4-neighbours the mean of their `difference` (in place); return
    where."""
    h, w = known.shape
    edge = ~known & _near(known, 1, diagonals=False)
    ys, xs = np.nonzero(edge)
    flat, known_flat = difference.reshape(h * w, -1), known.reshape(-1)
    total = np.zeros((len(ys), difference.shape[2]), np.float32)
    count = np.zeros(len(ys), np.float32)
    for y, x in ((ys - 1, xs), (ys + 1, xs), (ys, xs - 1), (ys, xs + 1)):
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        at = np.where(inside, y * w + x, 0)
        take = inside & known_flat[at]
        total += flat[at] * take[:, None]
        count += take
    flat[ys * w + xs] = total / count[:, None]
    return edge


def _membrane(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`values` (H×W×C float32) kept where `known`, harmonic elsewhere (zero flux at the edges); in place.

    Coarse to fine: the coarser level's solution, upsampled, is the start; then Gauss-Seidel sweeps refine
    it on the unknown pixels within `_BAND` pixels of a known one. Farther away a harmonic function varies
    only on the scale of its distance to the boundary, which the coarser levels already resolve; so a level
    costs about its unknown pixels and its boundary's length, not the window's area.
    """
    if known.all():
        return values
    h, w = known.shape
    if max(h, w) <= _COARSEST:
        values[~known] = values[known & _near(~known, 1)].mean(axis=0)
        _relax(values, ~known, _DIRECT_SWEEPS)
        return values
    # 1. The coarser level: 2×2 blocks, known where any pixel is. A block's value is the mean of its known
    #    pixels next to an unknown one (the boundary): only those reach the unknown pixels, and the ones
    #    deeper in would pull the coarse boundary's value away from the fine one's. A block with none lies
    #    inside the known region, cut off from the unknown blocks by blocks that have some: its value
    #    (0) is never read.
    ch, cw = (h + 1) // 2, (w + 1) // 2
    ys, xs = np.nonzero(known & _near(~known, 1))
    block = (ys // 2) * cw + xs // 2
    count = np.maximum(np.bincount(block, minlength=ch * cw), 1)
    ring = values.reshape(h * w, -1)[ys * w + xs]
    weighted = np.stack(
        [np.bincount(block, weights=ring[:, c], minlength=ch * cw) / count for c in range(ring.shape[1])],
        axis=-1,
    ).astype(np.float32)
    inside = np.zeros((2 * ch, 2 * cw), bool)
    inside[:h, :w] = known
    inside = inside[0::2, 0::2] | inside[1::2, 0::2] | inside[0::2, 1::2] | inside[1::2, 1::2]
    coarse = _membrane(weighted.reshape(ch, cw, -1), inside)
    # 2. Its solution, upsampled, on this level's unknown pixels; sweeps near the known ones
    ys, xs = np.nonzero(~known)
    values.reshape(h * w, -1)[ys * w + xs] = _upsample_at(coarse, ys, xs)
    _relax(values, ~known & _near(known, _BAND), _SWEEPS)
    return values


def _upsample_at(coarse: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The bilinear upsample (×2, pixel centres) of `coarse` at fine pixels (ys, xs): each takes 3/4 of its
    block and 1/4 of the next one towards it, in y and in x."""
    ch, cw = coarse.shape[:2]
    flat = coarse.reshape(ch * cw, -1)
    i, j = ys // 2, xs // 2
    ni = np.clip(np.where(ys % 2, i + 1, i - 1), 0, ch - 1)
    nj = np.clip(np.where(xs % 2, j + 1, j - 1), 0, cw - 1)
    up = flat[i * cw + j] * 0.5625
    up += (flat[ni * cw + j] + flat[i * cw + nj]) * 0.1875
    up += flat[ni * cw + nj] * 0.0625
    return up


def _near(mask: np.ndarray, distance: int, *, diagonals: bool = True) -> np.ndarray:
    """Pixels within `distance` (in x and in y) of a True pixel of `mask`: dilations by 1, 2, 4, ... px.
    Without `diagonals`, only the 4 neighbours of each pixel (`distance` 1)."""
    if not diagonals:
        near = mask.copy()
        near[1:] |= mask[:-1]
        near[:-1] |= mask[1:]
        near[:, 1:] |= mask[:, :-1]
        near[:, :-1] |= mask[:, 1:]
        return near
    near = mask.copy()
    for axis in (0, 1):
        lines, reach = np.moveaxis(near, axis, 0), 0  # a view: dilating it dilates `near`
        while reach < distance:
            step = min(reach + 1, distance - reach)
            before = lines.copy()
            lines[step:] |= before[:-step]
            lines[:-step] |= before[step:]
            reach += step
    return near


def _relax(values: np.ndarray, active: np.ndarray, sweeps: int) -> None:
    """Red-black Gauss-Seidel sweeps of the Laplace equation on the `active` pixels (in place), the others
    held fixed.

    A neighbour outside the image counts as the pixel itself (mirror: zero flux at the edges). Works on the
    flat indices of the active pixels, so a sweep costs their number, not the image's area.
    """
    h, w = active.shape
    flat = values.reshape(h * w, -1)  # a view: `values` is C-contiguous
    ys, xs = np.nonzero(active)
    order = []
    for colour in (0, 1):
        pick = (ys + xs) % 2 == colour
        y, x = ys[pick], xs[pick]
        order.append(
            (
                y * w + x,
                np.maximum(y - 1, 0) * w + x,
                np.minimum(y + 1, h - 1) * w + x,
                y * w + np.maximum(x - 1, 0),
                y * w + np.minimum(x + 1, w - 1),
            )
        )
    for _ in range(sweeps):
        for at, up, down, left, right in order:
            flat[at] = (flat[up] + flat[down] + flat[left] + flat[right]) * 0.25


@dataclass(frozen=True)
class Step:
    """How visible the boundaries between calls are, in mean absolute uint8 difference per channel.

    `across`: over the neighbour pairs (horizontal and vertical) whose two pixels were painted by different
    steps (the hero image or a call). `within`: over the pairs of the same orientation right next to them, up
    to `depth` pixels into each side, both pixels painted by that side's step: what neighbours differ by
    anyway (texture). `step = across - within` is what the boundary adds.
    """

    across: float
    within: float
    pairs: int

    @property
    def step(self) -> float:
        return self.across - self.within


def measure_step(pixels: np.ndarray, owner: np.ndarray, *, depth: int = 2) -> Step:
    """The step across the boundaries between pixels painted by different steps of a world canvas.

    Args:
        pixels: the world's pixels, uint8 H×W×3.
        owner: which step painted each pixel (H×W ints; negative: unpainted, left out).
        depth: how many pairs into each side count as "near the boundary".
    """
    if pixels.shape[:2] != owner.shape:
        raise ValueError(f"`owner` has to be {pixels.shape[:2]} like `pixels` but is {owner.shape}.")
    across, within = [], []
    image = pixels.astype(np.float32)
    for axis in (0, 1):
        # pair i joins pixel i and i + 1 along `axis`: its difference, and whether one step painted both
        a, b = np.moveaxis(image, axis, 0), np.moveaxis(owner, axis, 0)
        diff = np.abs(a[1:] - a[:-1]).mean(axis=-1)
        painted = (b[1:] >= 0) & (b[:-1] >= 0)
        boundary = painted & (b[1:] != b[:-1])
        same = painted & (b[1:] == b[:-1])
        across.append(diff[boundary])
        n = len(diff)
        for s in range(1, depth + 1):
            # pair i - s lies on the side of pixel i, pair i + s on the side of pixel i + 1
            before = boundary[s:] & same[:-s] & (b[: n - s] == b[s:n])
            after = boundary[:-s] & same[s:] & (b[s + 1 : n + 1] == b[1 : n + 1 - s])
            within += [diff[:-s][before], diff[s:][after]]
    across_all, within_all = np.concatenate(across), np.concatenate(within)
    if not len(across_all):
        return Step(0.0, 0.0, 0)
    return Step(
        across=float(across_all.mean()),
        within=float(within_all.mean()) if len(within_all) else 0.0,
        pairs=len(across_all),
    )
