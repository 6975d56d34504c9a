"""The coarse-mask rule of one image and what every method shares: the rule, its masks, components.

:mod:`samgeo_pipeline.water.coarse` chooses, fits and applies a rule; the methods live in
:mod:`samgeo_pipeline.water.index_rule` (NDWI/MNDWI), :mod:`samgeo_pipeline.water.rgb_rule` (dark and smooth)
and :mod:`samgeo_pipeline.water.coarse` itself (DSWE and Fmask, from :mod:`samgeo_pipeline.water.spectral_tests`).

Arrays: ``data`` is ``float32 (bands, rows, cols)`` in file units, bands in ``rule.band_names``
order; masks are ``bool (rows, cols)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np

Method = Literal["dswe", "fmask", "ndwi", "mndwi", "rgb"]
#: Pixels with an index below threshold - LAND_MARGIN are the image's land reference; for
#: prompts, they are the only candidates of negative points.
LAND_MARGIN = 0.1
#: Index above threshold + SURE_MARGIN: candidates of positive points.
SURE_MARGIN = 0.1
LAND_MIN_PIXELS = 100
#: Percentile of each band whose lowest value over the bands is the image's dark floor.
FLOOR_PERCENTILE = 0.1


@dataclass(frozen=True)
class CoarseRule:
    """The coarse-mask parameters of one image (in ``(value - offset) x scale`` units).

    Attributes:
        method: ``dswe``, ``fmask``, ``ndwi``, ``mndwi`` or ``rgb``.
        band_names: bands of the ``data`` arrays the rule is applied to.
        offset: subtracted from every band before ratios and comparisons: the dark floor, or
            for reflectance methods the value of zero reflectance.
        scale: reflectance per file unit (reflectance methods), else 1.
        reflectance_source: where the reflectance map came from; None when unknown.
        dswe_water: ``dswe``: which classes are water (:data:`~samgeo_pipeline.water.reflectance_rule.DSWE_WATER_CLASSES`).
        dropped: tests or terms the bands did not allow, for the manifest.
        threshold: index threshold (water where index > threshold); None for rgb.
        nir_max, swir_max: water is darker than these; None: no such test.
        grey_low, grey_high: rgb: grey levels mapped to 0 and 1.
        grey_max: rgb: water is darker than this (scaled grey): the image's Otsu split of grey
            levels, at most :data:`MAX_WATER_GREY`.
        grey_seed: rgb: seeds are darker than this: the top of the darkest mode of the smooth
            pixels (:func:`darkest_mode_edge`), at most ``grey_max``.
        texture_window: rgb: side of the smoothness window, in working pixels.
        separability: how well the index (rgb: grey level) separates the image's water from
            the rest, in [0, 1] (between-class over total variance); None without water.
        water_fraction: fraction of valid pixels the rule calls water on the decimated read.
        uncertain: why the rule cannot tell water from land on this image (one line), or None
            when it can. An uncertain image's coarse mask is not trusted: SAM is not prompted
            from it and the image's status says so.
    """

    method: Method
    band_names: tuple[str, ...]
    offset: float = 0.0
    scale: float = 1.0
    reflectance_source: str | None = None
    dswe_water: str = "wetland"
    dropped: tuple[str, ...] = ()
    threshold: float | None = None
    nir_max: float | None = None
    swir_max: float | None = None
    grey_low: float = 0.0
    grey_high: float = 1.0
    grey_max: float | None = None
    grey_seed: float | None = None
    texture_window: int = 13
    separability: float | None = None
    water_fraction: float = 0.0
    uncertain: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-able form for the manifest."""
        out = asdict(self)
        out["band_names"] = list(self.band_names)
        out["dropped"] = list(self.dropped)
        return out


@dataclass(frozen=True)
class CoarseMask:
    """The coarse mask of a tile and the pools prompts are drawn from (all ``bool (rows, cols)``).

    Attributes:
        water: the coarse water mask (False on invalid pixels).
        sure_water: part of ``water`` far from the decision boundary (positive points); None
            when not asked for.
        sure_land: valid pixels far from it on the land side (negative points); None when not
            asked for.
    """

    water: np.ndarray
    sure_water: np.ndarray | None
    sure_land: np.ndarray | None
    components: Components | None = None
    """``water``'s components when the mask is exactly some components of a labelled mask (spectral
    methods), so that the prompts need not label it again; None otherwise."""


@dataclass(frozen=True)
class Components:
    """The 8-connected components of a mask, as labels of a mask that holds it.

    Attributes:
        labels: ``int32 (rows, cols)`` from :func:`label_components` of the mask or of a superset
            of it (0: background), numbered in raster order of first pixels.
        areas: ``int64 (count,)`` pixels of each label that belongs to the mask, 0 for the others
            (the background, and components of the superset left out of the mask).
    """

    labels: np.ndarray
    areas: np.ndarray


def keep_components(candidates: np.ndarray, seeds: np.ndarray, min_area: int) -> np.ndarray:
    """The 8-connected components of ``candidates`` that hold a seed pixel and ``min_area`` pixels."""
    return kept_components(candidates, seeds, min_area)[0]


def kept_components(candidates: np.ndarray, seeds: np.ndarray, min_area: int) -> tuple[np.ndarray, Components | None]:
    """:func:`keep_components`, and the components kept (None when ``candidates`` is empty)."""
    if not candidates.any():
        return candidates, None
    count, labels = label_components(candidates)
    areas = np.bincount(labels[candidates], minlength=count)  # label 0 (background) not counted
    keep = areas >= max(1, min_area)
    if seeds is not candidates:
        keep &= np.bincount(labels[seeds & candidates], minlength=count) > 0
    keep[0] = False
    water = candidates.copy() if keep[1:].all() else np.take(keep, labels)
    return water, Components(labels, np.where(keep, areas, 0))


def label_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """The 8-connected components of a ``bool (rows, cols)`` mask, in one OpenCV pass.

    Returns:
        ``count`` (components + 1 for the background) and ``int32 (rows, cols)`` labels, 0 where
        the mask is False. Components are numbered in raster order of their first pixel (OpenCV's
        SAUF algorithm), as ``scipy.ndimage.label`` numbers them, in a third of its time. (OpenCV's
        ``WithStats`` variant costs 7x the labelling on a 1024² tile: areas come from ``bincount``.)
    """
    mask8 = np.ascontiguousarray(mask).view(np.uint8)
    return cv2.connectedComponentsWithAlgorithm(mask8, 8, cv2.CV_32S, cv2.CCL_SAUF)


def dark_floor(data: np.ndarray, valid: np.ndarray) -> float:
    """The image's additive offset: the lowest :data:`FLOOR_PERCENTILE` over its bands, never below 0."""
    pixels = data[:, valid]
    if pixels.size == 0:
        return 0.0
    return max(0.0, float(np.percentile(pixels, FLOOR_PERCENTILE, axis=1).min()))


def band_of(data: np.ndarray, rule: CoarseRule, name: str) -> np.ndarray:
    """Band ``name`` of ``data`` less the rule's ``offset`` (not yet times ``scale``)."""
    band = data[rule.band_names.index(name)]
    band_less_offset: np.ndarray = band - np.float32(rule.offset) if rule.offset else band
    return band_less_offset


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by ``radius`` pixels (square)."""
    size = 2 * radius + 1
    return cv2.dilate(mask.view(np.uint8), np.ones((size, size), np.uint8)).view(bool)
