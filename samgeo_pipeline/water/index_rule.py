"""The ``ndwi`` and ``mndwi`` coarse-mask methods, and normalised-difference arithmetic.

An index above a threshold (fixed, or Otsu's split near the index's edges), with NIR and SWIR
darker than the image's land; ``uint8`` tiles are classified by one table lookup of each (green,
NIR/SWIR) pair (see :mod:`samgeo_pipeline.water.coarse`). Arrays as in :mod:`samgeo_pipeline.water.rule`.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import cv2
import numpy as np

from samgeo_pipeline.water.rule import LAND_MARGIN, LAND_MIN_PIXELS, SURE_MARGIN, CoarseRule, band_of, grow
from samgeo_pipeline.water.spectral_tests import normalized_difference, ratio_of

#: Index threshold of each spectral method when ``--threshold`` is not given.
DEFAULT_THRESHOLDS: dict[str, float] = {"mndwi": -0.1, "ndwi": 0.0}
#: Otsu splits are used only at a histogram valley this deep (see :func:`bimodal_split`).
VALLEY_DEPTH = 0.5
#: Edge Otsu: Canny's hysteresis thresholds on the index scaled to 0-255, the buffer around edges
#: (pixels), and the fewest buffered pixels worth a histogram.
EDGE_CANNY = (40, 80)
EDGE_BUFFER = 3
EDGE_MIN_PIXELS = 200


def fit_index(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, threshold: float) -> CoarseRule:
    index = index_of(data, rule)
    land = valid & (index < threshold - LAND_MARGIN)
    limits: dict[str, float | None] = {"nir": None, "swir": None}
    for band in limits:
        if band in rule.band_names and land.sum() >= LAND_MIN_PIXELS:
            limits[band] = float(np.median(band_of(data, rule, band)[land]))
    if rule.method == "ndwi":
        split = bimodal_split(band_of(data, rule, "nir")[valid])
        if split is not None:
            limits["nir"] = split if limits["nir"] is None else min(limits["nir"], split)
    return replace(rule, threshold=float(threshold), nir_max=limits["nir"], swir_max=limits["swir"])


def land_limits(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, threshold: float) -> CoarseRule:
    """``rule`` with ``nir_max`` / ``swir_max``: the medians of NIR and SWIR over the image's land
    (pixels whose MNDWI, else NDWI, is below ``threshold`` - :data:`LAND_MARGIN`), when there are
    enough of them. Clouds, snow and bright soils are brighter than land there; water is not."""
    index = index_of(data, replace(rule, method="mndwi" if "swir" in rule.band_names else "ndwi"))
    land = valid & (index < threshold - LAND_MARGIN)
    limits: dict[str, float | None] = {"nir": None, "swir": None}
    for band in limits:
        if band in rule.band_names and land.sum() >= LAND_MIN_PIXELS:
            limits[band] = float(np.median(band_of(data, rule, band)[land]))
    return replace(rule, nir_max=limits["nir"], swir_max=limits["swir"])


def edge_otsu_threshold(index: np.ndarray, valid: np.ndarray) -> float | None:
    """Otsu's split of the index over the pixels near its edges (Donchyts et al. 2016), or None.

    Canny edges of the index (``float32 (rows, cols)`` in [-1, 1]) buffered by
    :data:`EDGE_BUFFER` px hold water and land in similar amounts, so their histogram is bimodal
    even where the whole image's is not (little water, much cloud). None when fewer than
    :data:`EDGE_MIN_PIXELS` valid pixels lie near edges or their histogram has no valley
    (:func:`bimodal_split`): the image gives no per-image threshold.
    """
    scaled = np.clip((index + 1.0) * 127.5, 0, 255).astype(np.uint8)
    edges = cv2.Canny(scaled, *EDGE_CANNY)
    near = grow(edges > 0, EDGE_BUFFER) & valid
    if near.sum() < EDGE_MIN_PIXELS:
        return None
    return bimodal_split(index[near])


def bimodal_split(values: np.ndarray, bins: int = 64) -> float | None:
    """Otsu's split of ``values`` when their histogram has a valley there, else None.

    Otsu always returns a split, even of a single mode (a unimodal Gaussian splits at its mean
    with a between-class share of variance of 2/pi ~ 0.64), so the split is used only when the
    smoothed histogram at the split is below :data:`VALLEY_DEPTH` times the lower of the two
    modes' peaks. Where the best split is an empty gap, its middle is returned (skimage's Otsu
    returns its first bin, right at the edge of the lower mode).
    """
    if values.size < LAND_MIN_PIXELS:
        return None
    low, high = np.percentile(values, (0.1, 99.9))
    if not high > low:
        return None
    hist, edges = np.histogram(np.clip(values, low, high), bins=bins, range=(float(low), float(high)))
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(hist)[:-1].astype(np.float64)
    above = hist.sum() - below
    sum_below = np.cumsum(hist * centres)[:-1]
    mean_below = sum_below / np.maximum(below, 1)
    mean_above = (float((hist * centres).sum()) - sum_below) / np.maximum(above, 1)
    between = below * above * (mean_below - mean_above) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    k = int(best[0] + best[-1]) // 2  # split between bins k and k + 1
    smooth = np.convolve(hist, np.ones(3) / 3, mode="same")
    valley = smooth[best[0] : best[-1] + 2].min()
    if valley > VALLEY_DEPTH * min(smooth[: k + 1].max(), smooth[k + 1 :].max()):
        return None
    return float(edges[k + 1])


def index_tests(
    data: np.ndarray, rule: CoarseRule, pools: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per pixel of float32 ``data`` (validity not applied) under a spectral rule: ``(passes,
    above_sure, above_land)``, the index and brightness tests of a candidate, the index above
    threshold + :data:`SURE_MARGIN`, and above threshold - :data:`LAND_MARGIN` (None without ``pools``).
    """
    other = _second_band(rule)
    threshold = rule.threshold
    assert threshold is not None, "an ndwi or mndwi rule always has a threshold"
    green, second = band_of(data, rule, "green"), band_of(data, rule, other)
    total, diff = green + second, green - second  # once per tile, for all three comparisons
    passes = nd_above(total, diff, threshold)
    for band, limit in (("nir", rule.nir_max), ("swir", rule.swir_max)):
        if limit is not None:
            passes &= (second if band == other else band_of(data, rule, band)) < limit
    if not pools:
        return passes, None, None
    above_sure = nd_above(total, diff, threshold + SURE_MARGIN)
    return passes, above_sure, nd_above(total, diff, threshold - LAND_MARGIN)


#: Bits of :func:`_spectral_lut`'s codes: :func:`index_tests`'s three tests.
_PASSES, _ABOVE_SURE, _ABOVE_LAND = 1, 2, 4


def index_tests_uint8(
    data: np.ndarray, rule: CoarseRule, pools: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`index_tests` of ``uint8`` bands: one lookup of each pixel's (green, NIR or SWIR) pair."""
    names = rule.band_names
    other = _second_band(rule)
    pair = (data[names.index("green")].astype(np.uint16) << 8) | data[names.index(other)]
    codes = np.take(_spectral_lut(rule), pair)
    passes = (codes & _PASSES).view(bool)
    for band, limit in (("nir", rule.nir_max), ("swir", rule.swir_max)):
        if limit is not None and band != other:  # a limit on a third band: its own table
            passes &= cv2.LUT(np.ascontiguousarray(data[names.index(band)]), _darker_lut(rule, band)).view(bool)
    if not pools:
        return passes, None, None
    return passes, (codes & _ABOVE_SURE).astype(bool), (codes & _ABOVE_LAND).astype(bool)


@functools.lru_cache(maxsize=16)
def _spectral_lut(rule: CoarseRule) -> np.ndarray:
    """``uint8 (65536,)``: :func:`index_tests`' results for green ``g`` and the second band ``s``
    (uint8 values) at ``g << 8 | s``, as :data:`_PASSES` | :data:`_ABOVE_SURE` | :data:`_ABOVE_LAND`
    bits. A limit on a third band is not in the table."""
    other = _second_band(rule)
    levels = np.arange(256, dtype=np.float32)
    grid = np.stack([np.repeat(levels, 256), np.tile(levels, 256)])  # (green, second) of each code
    pair_rule = replace(rule, band_names=("green", other), nir_max=rule.nir_max if other == "nir" else None,
                        swir_max=rule.swir_max if other == "swir" else None)  # fmt: skip
    passes, above_sure, above_land = index_tests(grid, pair_rule, pools=True)
    assert above_sure is not None and above_land is not None  # pools=True computes both
    codes: np.ndarray = (
        passes * np.uint8(_PASSES) | above_sure * np.uint8(_ABOVE_SURE) | above_land * np.uint8(_ABOVE_LAND)
    )
    codes.flags.writeable = False
    return codes


@functools.lru_cache(maxsize=16)
def _darker_lut(rule: CoarseRule, band: str) -> np.ndarray:
    """``uint8 (256,)``: 1 where the uint8 value of ``band`` passes the rule's limit on it."""
    limit = rule.nir_max if band == "nir" else rule.swir_max
    assert limit is not None  # called only for a band the rule limits
    levels = np.arange(256, dtype=np.float32)[None]
    darker: np.ndarray = (band_of(levels, replace(rule, band_names=(band,)), band) < limit).view(np.uint8)
    return darker


def index_above(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """``normalized_difference(a, b) > threshold`` without a division (this runs on every tile).

    For ``-1 < threshold < 1``: (a - b) / (a + b) > t is (a - b) > t (a + b) where a + b > 0, the
    reverse where a + b < 0 (negative reflectances), and 0 > t where a + b = 0 (the index is 0).
    Other thresholds fall back to :func:`normalized_difference`.
    """
    return nd_above(a + b, a - b, threshold)


def nd_above(total: np.ndarray, diff: np.ndarray, threshold: float) -> np.ndarray:
    """``diff / total > threshold`` for a normalised difference ``(a - b) / (a + b)`` given as
    ``total = a + b`` and ``diff = a - b``, without a division (this runs on every tile).

    For ``-1 < threshold < 1``: ``diff > threshold x total`` where the total is positive, the
    reverse where it is negative (negative reflectances), and ``0 > threshold`` where it is 0
    (the index is 0 there). Other thresholds divide.
    """
    if not -1.0 < threshold < 1.0:
        return ratio_of(total, diff) > threshold
    scaled = total * np.float32(threshold)
    above: np.ndarray = diff > scaled
    if (total <= 0).any():  # rare
        negative = total < 0
        above[negative] = diff[negative] < scaled[negative]
        above[total == 0] = threshold < 0
    return above


def _second_band(rule: CoarseRule) -> str:
    """The band the index compares green with: SWIR for ``mndwi``, NIR for ``ndwi``."""
    return "swir" if rule.method == "mndwi" else "nir"


def index_of(data: np.ndarray, rule: CoarseRule) -> np.ndarray:
    other = _second_band(rule)
    return normalized_difference(band_of(data, rule, "green"), band_of(data, rule, other))
