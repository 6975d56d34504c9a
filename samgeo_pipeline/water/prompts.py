"""Automatic SAM prompts from a coarse mask: per connected component, points or a box.

Coordinates: points are ``(x, y)`` = ``(col, row)`` in the tile's pixel frame (float32); boxes are
``xyxy`` in the same frame. Labels: 1 positive, 0 negative.
Sampling follows the seed workflow: erode the component N = int(count**0.6 / 35) times with a 3x3
square (negatives: background, count**0.6 / 50), then pick points uniformly at random, blanking a
disc of radius d = 2.75 * sqrt(count) / n (negatives 2 * sqrt(count) / n) around each pick.
Optional pools narrow the candidates: positives from the eroded component within ``sure_water``,
negatives from the eroded background within ``sure_land`` (the coarse mask's confident parts,
:class:`~samgeo_pipeline.water.coarse.CoarseMask`), each falling back to the whole eroded region when
the pool leaves no candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from samgeo_pipeline.water.coarse import Components, label_components

_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class ComponentPrompt:
    """Prompt for one connected component of the coarse mask.

    Attributes:
        points_xy: ``float32 (n, 2)`` point coordinates ``(col, row)`` in tile pixels (may be empty).
        labels: ``int64 (n,)``: 1 positive, 0 negative.
        box_xyxy: ``float32 (4,)`` box ``(x0, y0, x1, y1)`` in tile pixels, or None.
        area: pixel count of the component.
    """

    points_xy: np.ndarray
    labels: np.ndarray
    box_xyxy: np.ndarray | None
    area: int


def erosion_iterations(count: int, divisor: float) -> int:
    """The seed's erosion depth: ``int(count ** 0.6 / divisor)``."""
    return int(count**0.6 / divisor)


def erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Erode a ``bool`` mask with a 3x3 square; if nothing would remain, erode less.

    Halves the depth until some pixel survives, so a thin component still yields candidates.
    """
    if iterations <= 0 or not mask.any():
        return mask
    m8 = mask.astype(np.uint8)
    while iterations > 0:
        eroded = cv2.erode(m8, _KERNEL, iterations=iterations, borderType=cv2.BORDER_REPLICATE) > 0
        if eroded.any():
            return eroded
        iterations //= 2
    return mask


def sample_points(candidates: np.ndarray, n: int, min_distance: float, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` points from the True pixels of ``candidates``, at least ``min_distance`` apart.

    Args:
        candidates: ``bool (rows, cols)``.
        n: number of points wanted.
        min_distance: radius (pixels) blanked around each pick.
        rng: random generator (determinism comes from its seed).

    Returns:
        ``float32 (k, 2)`` with ``k <= n``, as ``(col, row)``.
    """
    rows, cols = np.nonzero(candidates)
    picked: list[tuple[float, float]] = []
    alive = np.ones(rows.size, dtype=bool)
    r2 = float(min_distance) ** 2
    while len(picked) < n and alive.any():
        choice = rng.choice(np.flatnonzero(alive))
        r, c = rows[choice], cols[choice]
        picked.append((float(c), float(r)))
        alive &= (rows - r) ** 2 + (cols - c) ** 2 >= r2
        alive[choice] = False
    return np.asarray(picked, dtype=np.float32).reshape(-1, 2)


def component_prompts(
    coarse: np.ndarray,
    valid: np.ndarray,
    *,
    kind: str,
    n_points: int,
    n_negatives: int,
    erosion: int | None,
    box_jitter: int,
    max_components: int,
    rng: np.random.Generator,
    sure_water: np.ndarray | None = None,
    sure_land: np.ndarray | None = None,
    components: Components | None = None,
) -> list[ComponentPrompt]:
    """Prompts for the ``max_components`` largest 8-connected components of ``coarse``.

    Args:
        coarse: ``bool (rows, cols)`` coarse water mask of the tile.
        valid: ``bool (rows, cols)`` valid pixels (negatives are only drawn there).
        kind: ``"points"`` or ``"box"``.
        n_points, n_negatives: points per component.
        erosion: fixed 3x3 erosion depth, or None for the seed's dynamic depth.
        box_jitter: each box coordinate moves by an integer in ``[-box_jitter, box_jitter]``.
        max_components: keep the K largest components.
        rng: random generator.
        sure_water, sure_land: ``bool (rows, cols)`` pools of positive / negative points, or None.
        components: ``coarse``'s components when the caller has them
            (:attr:`~samgeo_pipeline.water.coarse.CoarseMask.components`), else they are labelled here.

    Returns:
        One :class:`ComponentPrompt` per kept component, largest first (ties: raster order of
        their first pixels).
    """
    if components is None:
        count, labels = label_components(coarse)
        components = Components(labels, np.bincount(labels.ravel(), minlength=count))
    labels, areas = components.labels, components.areas[1:]
    order = np.argsort(-areas, kind="stable")[:max_components]
    order = order[areas[order] > 0]
    height, width = coarse.shape
    prompts = []
    for k in order:
        area = int(areas[k])
        pixels = labels == k + 1
        sl = _bounding_slices(pixels)
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        box = None
        points = np.zeros((0, 2), np.float32)
        point_labels = np.zeros((0,), np.int64)
        if kind == "box":
            jitter = rng.integers(-box_jitter, box_jitter + 1, size=4) if box_jitter > 0 else np.zeros(4, int)
            box = np.array(
                [
                    np.clip(x0 + jitter[0], 0, width - 1),
                    np.clip(y0 + jitter[1], 0, height - 1),
                    np.clip(x1 - 1 + jitter[2], 0, width - 1),
                    np.clip(y1 - 1 + jitter[3], 0, height - 1),
                ],
                dtype=np.float32,
            )
        else:
            component = pixels[sl]
            depth = erosion if erosion is not None else erosion_iterations(area, 35)
            cand = _within(erode(component, depth), None if sure_water is None else sure_water[sl])
            pos = sample_points(cand, n_points, 2.75 * np.sqrt(area) / n_points, rng) + [x0, y0]
            points, point_labels = pos, np.ones(len(pos), np.int64)
            if n_negatives > 0:
                neg = _negatives(coarse, valid, sl, n_negatives, erosion, rng, sure_land)
                points = np.concatenate([points, neg]).astype(np.float32)
                point_labels = np.concatenate([point_labels, np.zeros(len(neg), np.int64)])
        prompts.append(ComponentPrompt(points.astype(np.float32), point_labels, box, area))
    return prompts


class PromptOptions(Protocol):
    """The prompt options of :class:`~samgeo_pipeline.config.SegmentConfig` (and of fine-tuning)."""

    # Read-only properties: the configs are frozen dataclasses, and a property lets ``prompt`` be
    # their narrower ``Literal``.
    @property
    def prompt(self) -> str: ...
    @property
    def points(self) -> int: ...
    @property
    def negatives(self) -> int: ...
    @property
    def erosion(self) -> int | None: ...
    @property
    def box_jitter(self) -> int: ...
    @property
    def max_components(self) -> int: ...


def prompts_for(
    mask: np.ndarray,
    valid: np.ndarray,
    options: PromptOptions,
    rng: np.random.Generator,
    sure_water: np.ndarray | None = None,
    sure_land: np.ndarray | None = None,
    components: Components | None = None,
) -> list[ComponentPrompt]:
    """:func:`component_prompts` with the options of a config object."""
    return component_prompts(
        mask,
        valid,
        kind=options.prompt,
        n_points=options.points,
        n_negatives=options.negatives,
        erosion=options.erosion,
        box_jitter=options.box_jitter,
        max_components=options.max_components,
        rng=rng,
        sure_water=sure_water,
        sure_land=sure_land,
        components=components,
    )


def _negatives(
    coarse: np.ndarray,
    valid: np.ndarray,
    sl: tuple[slice, slice],
    n: int,
    erosion: int | None,
    rng: np.random.Generator,
    sure_land: np.ndarray | None = None,
) -> np.ndarray:
    """Negative points from the eroded background around one component (its box grown by half)."""
    height, width = coarse.shape
    gy = (sl[0].stop - sl[0].start) // 2 + 8
    gx = (sl[1].stop - sl[1].start) // 2 + 8
    y0, y1 = max(0, sl[0].start - gy), min(height, sl[0].stop + gy)
    x0, x1 = max(0, sl[1].start - gx), min(width, sl[1].stop + gx)
    background = ~coarse[y0:y1, x0:x1] & valid[y0:y1, x0:x1]
    count = int(background.sum())
    if count == 0:
        return np.zeros((0, 2), np.float32)
    depth = erosion if erosion is not None else erosion_iterations(count, 50)
    cand = _within(erode(background, depth), None if sure_land is None else sure_land[y0:y1, x0:x1])
    return sample_points(cand, n, 2.0 * np.sqrt(count) / n, rng) + np.array([x0, y0], np.float32)


def _bounding_slices(mask: np.ndarray) -> tuple[slice, slice]:
    """Row and column slices of the bounding box of a non-empty ``bool (rows, cols)`` mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _within(candidates: np.ndarray, pool: np.ndarray | None) -> np.ndarray:
    """``candidates`` inside ``pool``, or ``candidates`` when there is no pool or nothing is inside it."""
    if pool is None:
        return candidates
    inside = candidates & pool
    return inside if inside.any() else candidates
