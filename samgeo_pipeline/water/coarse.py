"""Coarse water mask: a per-image rule fitted once on the decimated read, applied to every tile.

The coarse mask is what ``--model none`` writes and where SAM's prompts come from. The rule's
parameters are whole-image statistics (no per-tile thresholds, so no seams); applying it to a
tile costs a few array comparisons, box filters for RGB, and one connected-component labelling.

Methods, picked from the mapped bands and from whether the input's reflectance is known
(:mod:`samgeo_pipeline.io.reflectance`; ``--index auto``: dswe > mndwi > ndwi > fmask > rgb):

- ``dswe`` (green, red, NIR, SWIR1 mapped; blue and SWIR2 used when mapped), with reflectance
  known: the five tests of USGS DSWE (:func:`~samgeo_pipeline.water.spectral_tests.dswe_tests`), their
  classes, and the classes counted as water set by ``dswe_water`` (default ``wetland``: high and
  moderate confidence, DSWx's "open water", and potential wetland, DSWx's conservative "partial
  surface water", the latter only on images without cloud, whose shadows pass the same tests);
  Fmask's snow and (with blue) cloud tests run first and are never water. Every constant is
  published; nothing is fitted to the image.
  Without known reflectance, only DSWE's scale-free tests 1-3 run, on values less the image's dark
  floor (see below), and water is where all three pass (DSWE's moderate class or better whatever
  tests 4 and 5 would say); snow and cloud cannot be tested then.
- ``fmask`` (reflectance known; red and NIR, no green: e.g. red, NIR, SWIR1 only): Fmask's water
  test on NDVI and NIR (:func:`~samgeo_pipeline.water.spectral_tests.fmask_water`).
- ``mndwi`` (SWIR mapped, but not red and NIR): MNDWI = (green - swir) / (green + swir) above
  the threshold (default :data:`DEFAULT_THRESHOLDS`), and NIR and SWIR darker than the image's land (their medians over
  pixels with an index below threshold - :data:`LAND_MARGIN`). Clouds and bright soils, whose
  index can come close to the threshold, are brighter than land in NIR/SWIR; turbid water is not.
- ``ndwi`` (NIR, no SWIR): NDWI above the threshold, NIR darker than land, and darker than the
  split of NIR where its histogram has a valley (:func:`bimodal_split`).
  Uncalibrated NIR (NAIP) makes the sign of NDWI unreliable on bare soil; water's NIR darkness is
  not.
- ``rgb`` (no NIR, no SWIR): water is dark and smooth. Seeds: smooth pixels (local standard
  deviation over ``texture_window`` px below :data:`SMOOTH_STD`) in the darkest mode of the
  smooth pixels' grey levels (:func:`darkest_mode_edge`). Their 8-connected components grow over
  pixels darker than the image's Otsu split of grey levels (at most :data:`MAX_WATER_GREY` of its
  range) and not rough (5x5 standard deviation below :data:`ROUGH_STD`), then over such dark
  pixels within 2 px (the shore, where the 5x5 window also sees land). RGB lacks water's
  spectral signature: dark smooth vegetation and haze pass; the run warns, and NIR or SWIR, when
  the sensor has them, do much better.

**Abstaining.** A rule that cannot tell water from land on an image sets ``uncertain`` (a one-line
reason) instead of guessing: an RGB image whose dark and smooth share exceeds ``rgb_max_water``
(a dark ploughed field or forest, not a lake), and a fitted ``mndwi``/``ndwi`` rule whose index
separates the candidate water from the rest poorly (separability below
:data:`WARN_SEPARABILITY`) unless the user fixed ``--threshold``. The published ``dswe`` and
``fmask`` tests are not fitted, so they do not abstain.

Before any ratio, the image's dark floor (the lowest 0.1th percentile over the mapped bands,
never below 0) is subtracted from every band: an additive offset (haze, a DN offset) pulls
normalised differences toward 0.

Components (8-connected) smaller than ``min_area`` pixels are dropped. This step, and the RGB
growth from seeds, look at the tile's read window only: the result does not depend on the tiling
for components that the halo contains whole (always for ``min_area <= halo + 1``).

Arrays: ``data`` is ``float32 (bands, rows, cols)`` in file units, bands in ``rule.band_names``
order (:func:`apply_rule` also takes the file's own dtype); masks are ``bool (rows, cols)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import numpy as np

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.reflectance import Reflectance
from samgeo_pipeline.water import spectral_tests as water_tests
from samgeo_pipeline.water.index_rule import (
    DEFAULT_THRESHOLDS,
    bimodal_split,
    edge_otsu_threshold,
    fit_index,
    index_above,
    index_of,
    index_tests,
    index_tests_uint8,
    land_limits,
)
from samgeo_pipeline.water.reflectance_rule import (
    DISPLAY_DROPPED,
    RATIO_DSWE_DROPPED,
    dropped_tests,
    gate_wetland,
    reflectance_tests,
)
from samgeo_pipeline.water.rgb_rule import apply_rgb, darkest_mode_edge, fit_rgb, grey_level
from samgeo_pipeline.water.rule import (
    FLOOR_PERCENTILE,
    CoarseMask,
    CoarseRule,
    Components,
    Method,
    band_of,
    dark_floor,
    keep_components,
    kept_components,
    label_components,
)
from samgeo_pipeline.water.spectral_tests import normalized_difference

__all__ = [
    "FLOOR_PERCENTILE", "CoarseMask", "CoarseRule", "Components", "Method", "apply_rule", "bimodal_split",
    "dark_floor", "darkest_mode_edge", "edge_otsu_threshold", "fit_rule", "index_above", "keep_components",
    "kept_components", "label_components", "normalized_difference", "resolve_method", "rule_warnings",
]  # fmt: skip

#: Bands each method needs, in ``--index auto``'s order of preference.
METHOD_BANDS: dict[str, frozenset[str]] = {
    "dswe": frozenset({"green", "red", "nir", "swir"}),
    "mndwi": frozenset({"green", "swir"}),
    "ndwi": frozenset({"green", "nir"}),
    "fmask": frozenset({"red", "nir"}),
    "rgb": frozenset({"red", "green", "blue"}),
}
#: Methods whose tests are on reflectance (``dswe`` also runs without it, on its ratio tests).
REFLECTANCE_METHODS = frozenset({"dswe", "fmask"})
#: Methods that need reflectance.
NEEDS_REFLECTANCE = frozenset({"fmask"})
#: RGB images with a larger dark-and-smooth share are uncertain (``rgb_max_water``'s default).
RGB_MAX_WATER = 0.4

#: Spectral images whose separability is below this get a warning.
WARN_SEPARABILITY = 0.5
#: RGB images with more water than this (decimated read) get a stronger warning.
RGB_SUSPECT_FRACTION = 0.4
#: Below this water fraction (decimated read), an image has no water and no separability.
MIN_WATER_FRACTION = 1e-3


def resolve_method(
    requested: str, band_names: tuple[str, ...] | list[str], calibrated: bool = False, common_scale: bool = True
) -> Method:
    """The method for ``requested`` (``auto``: dswe > mndwi > ndwi > fmask > rgb, see the module docstring).

    Args:
        requested: ``auto`` or a method name.
        band_names: the mapped bands.
        calibrated: whether the input's reflectance is known (``fmask`` needs it).
        common_scale: whether the bands share one scale when reflectance is unknown (raw digital
            numbers, reflectance x 10000: yes; 8-bit display products, each band stretched to
            its own range: no). ``auto`` takes ``dswe`` without reflectance only then: its tests
            2 and 3 compare magnitudes across bands.

    Raises:
        InputError: the method needs a band that is not mapped, or reflectance that is unknown.
    """
    names = set(band_names)
    if requested == "auto":
        for candidate, needs in METHOD_BANDS.items():
            usable = calibrated or (candidate not in NEEDS_REFLECTANCE and (candidate != "dswe" or common_scale))
            if needs <= names and usable:
                return cast(Method, candidate)  # a key of METHOD_BANDS
        hint = " (red+nir works with known reflectance: pass --reflectance-scale)" if {"red", "nir"} <= names else ""
        raise InputError(
            f"no water index possible with bands {sorted(names)}: map green+nir, green+swir or red+green+blue{hint}"
        )
    missing = METHOD_BANDS[requested] - names
    if missing:
        raise InputError(f"index {requested} needs band(s) {sorted(missing)}; map them with --bands")
    if requested in NEEDS_REFLECTANCE and not calibrated:
        raise InputError(
            f"index {requested} needs reflectance, and nothing says how this file's values map to it: "
            "pass --reflectance-scale (e.g. 0.0001 for reflectance x 10000)"
        )
    return cast(Method, requested)  # a key of METHOD_BANDS (looked up above)


def fit_rule(
    data: np.ndarray,
    valid: np.ndarray,
    band_names: tuple[str, ...],
    requested: str = "auto",
    threshold: float | None = None,
    texture_window: int = 13,
    min_area: int = 1,
    offset: float | None = None,
    reflectance: Reflectance | None = None,
    dswe_water: str = "wetland",
    rgb_max_water: float = RGB_MAX_WATER,
    edge_otsu: bool = False,
    common_scale: bool = True,
) -> CoarseRule:
    """Fit the image's rule on its decimated read (``data``, ``valid``: the whole image).

    Args:
        data, valid: the image (decimated), see the module docstring.
        band_names: names of the bands of ``data``.
        requested: ``auto`` or a method name.
        threshold: fixed index threshold (mndwi, ndwi); None: :data:`DEFAULT_THRESHOLDS`.
        texture_window: rgb smoothness window (working pixels).
        min_area: as in :func:`apply_rule`, for the water fraction and separability.
        offset: the image's dark floor when the caller has it (:func:`dark_floor`), else computed.
        reflectance: how file values map to reflectance (:mod:`samgeo_pipeline.io.reflectance`), or None.
        dswe_water: ``dswe``: the classes counted as water
            (:data:`~samgeo_pipeline.water.reflectance_rule.DSWE_WATER_CLASSES`); ``wetland``
            is lowered to ``moderate`` on cloudy images (:func:`gate_wetland`).
        rgb_max_water: ``rgb``: a larger dark-and-smooth share makes the image uncertain.
        edge_otsu: ``mndwi``/``ndwi`` without ``threshold``: the threshold is Otsu's split of the
            index around its edges (:func:`edge_otsu_threshold`); no valley there: uncertain.
        common_scale: whether the bands share one scale (see :func:`resolve_method`).

    Raises:
        InputError: the method needs a band that is not mapped, or reflectance that is unknown.
    """
    method = resolve_method(requested, band_names, reflectance is not None, common_scale)
    if method == "dswe" and reflectance is None:
        floor = dark_floor(data, valid) if offset is None else max(0.0, float(offset))
        base = CoarseRule(method, tuple(band_names), floor, dropped=RATIO_DSWE_DROPPED, texture_window=texture_window)
        rule = land_limits(data, valid, base, water_tests.DSWE_MNDWI)
    elif method in REFLECTANCE_METHODS:
        assert reflectance is not None
        rule = CoarseRule(method, tuple(band_names), -reflectance.offset / reflectance.scale, reflectance.scale,
                          reflectance.source, dswe_water, dropped_tests(method, band_names),
                          texture_window=texture_window)  # fmt: skip
        if method == "dswe" and dswe_water == "wetland":
            rule = gate_wetland(data, valid, rule)
    else:
        offset = dark_floor(data, valid) if offset is None else max(0.0, float(offset))
        skipped = () if common_scale or not METHOD_BANDS["dswe"] <= set(band_names) else (DISPLAY_DROPPED,)
        base = CoarseRule(method, tuple(band_names), offset, dropped=skipped, texture_window=texture_window)
        if method == "rgb":
            rule = fit_rgb(data, valid, base)
        else:
            split = edge_otsu_threshold(index_of(data, base), valid) if edge_otsu and threshold is None else None
            chosen = threshold if threshold is not None else split if split is not None else DEFAULT_THRESHOLDS[method]
            rule = fit_index(data, valid, base, chosen)
            if edge_otsu and threshold is None and split is None:
                base = replace(base, uncertain=f"{method.upper()} has no valley around its edges (edge Otsu)")
    water = apply_rule(data, valid, rule, min_area, pools=False).water
    fraction = float(water[valid].mean())
    separability = None
    if MIN_WATER_FRACTION <= fraction <= 1 - MIN_WATER_FRACTION:
        separability = _separability(_feature(data, rule)[valid], water[valid])
    rule = replace(rule, separability=separability, water_fraction=fraction)
    if method in ("mndwi", "ndwi") and edge_otsu and threshold is None:
        return replace(rule, uncertain=base.uncertain)
    return replace(rule, uncertain=_uncertainty(rule, threshold is not None, rgb_max_water))


def _uncertainty(rule: CoarseRule, threshold_given: bool, rgb_max_water: float) -> str | None:
    """Why ``rule`` cannot be trusted on its image (see the module docstring), or None."""
    if rule.method == "rgb" and rule.water_fraction > rgb_max_water:
        return (
            f"RGB only: {100 * rule.water_fraction:.0f} % of the image is dark and smooth (more than "
            f"rgb_max_water {100 * rgb_max_water:.0f} %), which dark fields and forest also are"
        )
    spectral_fit = rule.method in ("mndwi", "ndwi") and not threshold_given
    if spectral_fit and rule.separability is not None and rule.separability < WARN_SEPARABILITY:
        return (
            f"{rule.method.upper()} separates the candidate water from the rest poorly (separability "
            f"{rule.separability:.2f} < {WARN_SEPARABILITY}) and the reflectance is unknown"
        )
    return None


def rule_warnings(rule: CoarseRule, where: str) -> list[str]:
    """One-line warnings a user should see about an image's coarse mask (empty when it is sound)."""
    if rule.uncertain:  # the image's status and its own log line say it
        return []
    messages = []
    if rule.method == "rgb":
        share = (
            f" ({100 * rule.water_fraction:.0f} % of it marked water: likely dark fields, forest or haze)"
            if rule.water_fraction > RGB_SUSPECT_FRACTION
            else ""
        )
        messages.append(
            f"{where}: RGB only, so water is found by darkness and smoothness, not by its spectrum{share}; "
            "shadows and dark smooth fields can pass: check quicklook.png, or map NIR/SWIR with --bands"
        )
    elif rule.separability is not None and rule.separability < WARN_SEPARABILITY:
        messages.append(
            f"{where}: water and land are poorly separated by {rule.method.upper()} (separability "
            f"{rule.separability:.2f} < {WARN_SEPARABILITY}); the coarse mask may be wrong: check quicklook.png"
        )
    return messages


def apply_rule(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, min_area: int, pools: bool = True) -> CoarseMask:
    """The coarse mask of a tile (or of any array of the image) under the image's rule.

    Args:
        data: the tile, ``(bands, rows, cols)`` in file units: ``float32``, or the file's own
            dtype. ``uint8`` bands under a spectral rule are classified through a lookup table of
            the float32 arithmetic (:func:`_spectral_lut`: the same masks without a float copy);
            other dtypes are converted to ``float32`` first.
        valid: ``bool (rows, cols)``.
        rule: the image's rule (:func:`fit_rule`).
        min_area: components (8-connected) with fewer pixels are dropped.
        pools: also compute the prompt pools (else ``sure_water`` and ``sure_land`` are None).
    """
    if rule.method in ("ndwi", "mndwi") and data.dtype == np.uint8:
        passes, above_sure, above_land = index_tests_uint8(data, rule, pools)
    else:
        data = data if data.dtype == np.float32 else data.astype(np.float32)
        if rule.method == "rgb":
            return apply_rgb(data, valid, rule, min_area, pools)
        tests = reflectance_tests if rule.method in REFLECTANCE_METHODS else index_tests
        passes, above_sure, above_land = tests(data, rule, pools)
    candidates = valid & passes
    water, components = kept_components(candidates, candidates, min_area)
    if not pools:
        return CoarseMask(water, None, None, components)
    assert above_sure is not None and above_land is not None  # the tests compute both with pools
    return CoarseMask(water, water & above_sure, valid & ~water & ~above_land, components)


def _feature(data: np.ndarray, rule: CoarseRule) -> np.ndarray:
    """The image's one-number-per-pixel view of the rule, for its separability: the grey level
    (rgb), NDVI negated (fmask: water is low), else the index (MNDWI for dswe)."""
    if rule.method == "rgb":
        return grey_level(data, rule)
    if rule.method == "fmask":
        return -normalized_difference(band_of(data, rule, "nir"), band_of(data, rule, "red"))
    if rule.method == "dswe":
        return normalized_difference(band_of(data, rule, "green"), band_of(data, rule, "swir"))
    return index_of(data, rule)


def _separability(values: np.ndarray, upper: np.ndarray) -> float:
    """Between-class variance of the partition ``upper`` / ``~upper`` over the total variance."""
    share = float(upper.mean())
    variance = float(values.var())
    if share in (0.0, 1.0) or variance <= 0:
        return 0.0
    gap = float(values[upper].mean() - values[~upper].mean())
    return share * (1 - share) * gap * gap / variance


