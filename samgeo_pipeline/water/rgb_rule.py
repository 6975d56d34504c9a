"""The ``rgb`` coarse-mask method: water is dark and smooth (no NIR, no SWIR).

Seeds are smooth pixels in the darkest mode of the smooth pixels' grey levels; their components
grow over dark pixels that are not rough, then over the shore (see :mod:`samgeo_pipeline.water.coarse`).
Arrays as in :mod:`samgeo_pipeline.water.rule`.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from samgeo_pipeline.water.rule import LAND_MIN_PIXELS, SURE_MARGIN, CoarseMask, CoarseRule, grow, keep_components

#: RGB: local standard deviation (grey level scaled to the image's 2-98 % range) of smooth pixels.
SMOOTH_STD = 0.03
#: RGB: a dark pixel rougher than SMOOTH_STD joins a seeded component below this 5x5 deviation.
ROUGH_STD = 0.08
#: RGB: a histogram peak at least this share of the highest is a mode (:func:`darkest_mode_edge`).
MAJOR_PEAK = 0.2
#: RGB: a mode ends where its density falls below this share of its peak.
MODE_TAIL = 0.1
#: RGB: water is never brighter than this fraction of the image's grey range.
MAX_WATER_GREY = 0.5
_ROUGH_WINDOW = 5


def fit_rgb(data: np.ndarray, valid: np.ndarray, rule: CoarseRule) -> CoarseRule:
    grey = grey_level(data, rule)  # identity scaling: the mean of red, green and blue
    low, high = np.percentile(grey[valid], (2.0, 98.0))
    rule = replace(rule, grey_low=float(low), grey_high=float(max(high, low + 1e-6)))
    grey = grey_level(data, rule)
    grey_max = min(float(threshold_otsu(grey[valid])), MAX_WATER_GREY)  # darker than the dark/bright split
    smooth = valid & (local_std(grey, rule.texture_window) < SMOOTH_STD)
    edge = darkest_mode_edge(grey[smooth])
    grey_seed = grey_max if edge is None else min(edge, grey_max)
    return replace(rule, grey_max=grey_max, grey_seed=float(grey_seed))


def apply_rgb(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, min_area: int, pools: bool) -> CoarseMask:
    """:func:`apply_rule` of an ``rgb`` rule (``data`` float32)."""
    grey = grey_level(data, rule)
    grey_max, grey_seed = rule.grey_max, rule.grey_seed
    assert grey_max is not None and grey_seed is not None, "an rgb rule is applied after fit_rgb"
    dark = (grey < grey_max) & valid
    smooth = local_std(grey, rule.texture_window) < SMOOTH_STD
    rough_ok = local_std(grey, _ROUGH_WINDOW) < ROUGH_STD
    seeds = dark & smooth & (grey < grey_seed)
    water = keep_components(dark & rough_ok, seeds, min_area)
    water |= grow(water, _ROUGH_WINDOW // 2) & dark  # the shore, where the window sees land too
    if not pools:
        return CoarseMask(water, None, None)
    sure_land = valid & ~water & ((grey >= grey_max + SURE_MARGIN) | ~rough_ok)
    return CoarseMask(water, water & seeds, sure_land)


def darkest_mode_edge(values: np.ndarray, bins: int = 32) -> float | None:
    """The upper edge of the darkest major mode of ``values`` (None for fewer than 100 values).

    On the smoothed histogram: from the first bin that reaches :data:`MAJOR_PEAK` of the highest,
    climb to the top of that mode, then walk down while the density keeps falling (5 % of slack
    for histogram noise), and stop at a valley or where it drops below :data:`MODE_TAIL` of the
    top. Water is the darkest smooth surface of an RGB image: this is the top of its grey levels,
    whether water fills most of the image or a tenth of it.
    """
    if values.size < LAND_MIN_PIXELS:
        return None
    low, high = np.percentile(values, (0.5, 99.5))
    if not high > low:
        return float(high)
    hist, edges = np.histogram(np.clip(values, low, high), bins=bins, range=(float(low), float(high)))
    smooth = np.convolve(hist, np.array([1, 2, 3, 2, 1]) / 9, mode="same")
    k = int(np.argmax(smooth >= MAJOR_PEAK * smooth.max()))
    while k + 1 < bins and smooth[k + 1] >= smooth[k]:
        k += 1
    floor = MODE_TAIL * smooth[k]
    while k + 1 < bins and floor < smooth[k + 1] <= 1.05 * smooth[k]:
        k += 1
    return float(edges[k + 1])


def grey_level(data: np.ndarray, rule: CoarseRule) -> np.ndarray:
    names = rule.band_names
    total = data[names.index("red")] + data[names.index("green")] + data[names.index("blue")]
    grey: np.ndarray = ((total / 3.0 - rule.grey_low) / (rule.grey_high - rule.grey_low)).astype(np.float32, copy=False)
    return grey


def local_std(grey: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of ``grey`` over a ``window`` x ``window`` box (edges reflected)."""
    mean = cv2.blur(grey, (window, window))
    mean_sq = cv2.blur(grey * grey, (window, window))
    std: np.ndarray = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    return std
