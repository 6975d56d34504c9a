"""Coarse water mask: a per-image rule fitted once on the decimated read, applied to every tile.

The coarse mask is what ``--model none`` writes and where SAM's prompts come from. The rule's
parameters are whole-image statistics (no per-tile thresholds, so no seams); applying it to a
tile costs a few array comparisons, box filters for RGB, and one connected-component labelling.

Methods, picked from the mapped bands and from whether the input's reflectance is known
(:mod:`samgeo_pipeline.reflectance`; ``--index auto``: dswe > mndwi > ndwi > fmask > rgb):

- ``dswe`` (green, red, NIR, SWIR1 mapped; blue and SWIR2 used when mapped), with reflectance
  known: the five tests of USGS DSWE (:func:`~samgeo_pipeline.water_tests.dswe_tests`), their
  classes, and the classes counted as water set by ``dswe_water`` (default ``wetland``: high and
  moderate confidence, DSWx's "open water", and potential wetland, DSWx's conservative "partial
  surface water", the latter only on images without cloud, whose shadows pass the same tests);
  Fmask's snow and (with blue) cloud tests run first and are never water. Every constant is
  published; nothing is fitted to the image.
  Without known reflectance, only DSWE's scale-free tests 1-3 run, on values less the image's dark
  floor (see below), and water is where all three pass (DSWE's moderate class or better whatever
  tests 4 and 5 would say); snow and cloud cannot be tested then.
- ``fmask`` (reflectance known; red and NIR, no green: e.g. red, NIR, SWIR1 only): Fmask's water
  test on NDVI and NIR (:func:`~samgeo_pipeline.water_tests.fmask_water`).
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

import functools
from dataclasses import asdict, dataclass, replace
from typing import Literal

import cv2
import numpy as np
from skimage.filters import threshold_otsu

from samgeo_pipeline import water_tests
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.reflectance import Reflectance

Method = Literal["dswe", "fmask", "ndwi", "mndwi", "rgb"]
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
#: ``dswe_water``: the DSWE classes counted as water.
DSWE_WATER_CLASSES: dict[str, tuple[int, ...]] = {
    "high": (water_tests.HIGH,),
    "moderate": (water_tests.HIGH, water_tests.MODERATE),
    "wetland": (water_tests.HIGH, water_tests.MODERATE, water_tests.WETLAND),
}
#: RGB images with a larger dark-and-smooth share are uncertain (``rgb_max_water``'s default).
RGB_MAX_WATER = 0.4

#: Index threshold of each spectral method when ``--threshold`` is not given.
DEFAULT_THRESHOLDS: dict[str, float] = {"mndwi": -0.1, "ndwi": 0.0}
#: Pixels with an index below threshold - LAND_MARGIN are the image's land reference; for
#: prompts, they are the only candidates of negative points.
LAND_MARGIN = 0.1
#: Index above threshold + SURE_MARGIN: candidates of positive points.
SURE_MARGIN = 0.1
#: Otsu splits are used only at a histogram valley this deep (see :func:`bimodal_split`).
VALLEY_DEPTH = 0.5
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
#: Spectral images whose separability is below this get a warning.
WARN_SEPARABILITY = 0.5
#: RGB images with more water than this (decimated read) get a stronger warning.
RGB_SUSPECT_FRACTION = 0.4
#: Below this water fraction (decimated read), an image has no water and no separability.
MIN_WATER_FRACTION = 1e-3
_LAND_MIN_PIXELS = 100
_ROUGH_WINDOW = 5


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
        dswe_water: ``dswe``: which classes are water (:data:`DSWE_WATER_CLASSES`).
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


def resolve_method(requested: str, band_names: tuple[str, ...] | list[str], calibrated: bool = False) -> Method:
    """The method for ``requested`` (``auto``: dswe > mndwi > ndwi > fmask > rgb, see the module docstring).

    Args:
        requested: ``auto`` or a method name.
        band_names: the mapped bands.
        calibrated: whether the input's reflectance is known (``dswe`` and ``fmask`` need it).

    Raises:
        InputError: the method needs a band that is not mapped, or reflectance that is unknown.
    """
    names = set(band_names)
    if requested == "auto":
        for candidate, needs in METHOD_BANDS.items():
            if needs <= names and (calibrated or candidate not in NEEDS_REFLECTANCE):
                return candidate  # type: ignore[return-value]
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
    return requested  # type: ignore[return-value]


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
        reflectance: how file values map to reflectance (:mod:`samgeo_pipeline.reflectance`), or None.
        dswe_water: ``dswe``: the classes counted as water (:data:`DSWE_WATER_CLASSES`); ``wetland``
            is lowered to ``moderate`` on cloudy images (:func:`_gate_wetland`).
        rgb_max_water: ``rgb``: a larger dark-and-smooth share makes the image uncertain.
        edge_otsu: ``mndwi``/``ndwi`` without ``threshold``: the threshold is Otsu's split of the
            index around its edges (:func:`edge_otsu_threshold`); no valley there: uncertain.

    Raises:
        InputError: the method needs a band that is not mapped, or reflectance that is unknown.
    """
    method = resolve_method(requested, band_names, reflectance is not None)
    if method == "dswe" and reflectance is None:
        floor = dark_floor(data, valid) if offset is None else max(0.0, float(offset))
        base = CoarseRule(method, tuple(band_names), floor, dropped=RATIO_DSWE_DROPPED, texture_window=texture_window)
        rule = _land_limits(data, valid, base, water_tests.DSWE_MNDWI)
    elif method in REFLECTANCE_METHODS:
        assert reflectance is not None
        rule = CoarseRule(method, tuple(band_names), -reflectance.offset / reflectance.scale, reflectance.scale,
                          reflectance.source, dswe_water, _dropped(method, band_names), texture_window=texture_window)  # fmt: skip
        if method == "dswe" and dswe_water == "wetland":
            rule = _gate_wetland(data, valid, rule)
    else:
        offset = dark_floor(data, valid) if offset is None else max(0.0, float(offset))
        base = CoarseRule(method, tuple(band_names), offset, texture_window=texture_window)
        if method == "rgb":
            rule = _fit_rgb(data, valid, base)
        else:
            split = edge_otsu_threshold(_index(data, base), valid) if edge_otsu and threshold is None else None
            chosen = threshold if threshold is not None else split if split is not None else DEFAULT_THRESHOLDS[method]
            rule = _fit_spectral(data, valid, base, chosen)
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


#: What ``dswe`` drops when the reflectance is unknown.
RATIO_DSWE_DROPPED = (
    "DSWE tests 4 and 5 (need reflectance): water where tests 1-3 all pass",
    "Fmask snow and cloud tests (need reflectance)",
)


#: ``dswe_water=wetland`` counts potential wetland only on images with at most this share of
#: Fmask cloud: cloud shadows pass DSWE's partial-surface-water tests as wetland does, and only
#: Fmask's shadow matching (not done here) tells them apart. A design bound, not fitted: any
#: share from 0.5 % to 5 % gives the same masks on the shared imagery.
WETLAND_MAX_CLOUD = 0.01


def _gate_wetland(data: np.ndarray, valid: np.ndarray, rule: CoarseRule) -> CoarseRule:
    """``rule`` with ``dswe_water`` lowered to moderate when the image's cloud share (or a missing
    blue band) leaves cloud shadows possible (:data:`WETLAND_MAX_CLOUD`)."""
    cloud = water_tests.fmask_cloud(_reflectances(data, rule))
    share = float(cloud[valid].mean()) if cloud is not None and valid.any() else None
    if share is not None and share <= WETLAND_MAX_CLOUD:
        return rule
    why = "no blue band for the cloud test" if share is None else f"{100 * share:.1f} % cloud"
    dropped = (*rule.dropped, f"potential wetland class ({why}: cloud shadows look alike)")
    return replace(rule, dswe_water="moderate", dropped=dropped)


def _dropped(method: str, band_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """What a reflectance method cannot test with these bands (for the manifest)."""
    names = set(band_names)
    dropped = []
    if method == "dswe":
        dropped += [f"{band} terms of DSWE tests 3 and 5" for band in ("blue", "swir2") if band not in names]
        if "blue" not in names:
            dropped.append("Fmask cloud test (needs blue)")
    if method == "fmask" or "green" not in names:
        dropped.append("Fmask snow test (needs green)")
    return tuple(dropped)


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
        passes, above_sure, above_land = _spectral_tests_uint8(data, rule, pools)
    else:
        data = data if data.dtype == np.float32 else data.astype(np.float32)
        if rule.method == "rgb":
            return _apply_rgb(data, valid, rule, min_area, pools)
        tests = _reflectance_tests if rule.method in REFLECTANCE_METHODS else _spectral_tests
        passes, above_sure, above_land = tests(data, rule, pools)
    candidates = valid & passes
    water, components = kept_components(candidates, candidates, min_area)
    if not pools:
        return CoarseMask(water, None, None, components)
    return CoarseMask(water, water & above_sure, valid & ~water & ~above_land, components)


def _apply_rgb(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, min_area: int, pools: bool) -> CoarseMask:
    """:func:`apply_rule` of an ``rgb`` rule (``data`` float32)."""
    grey = _grey(data, rule)
    dark = (grey < rule.grey_max) & valid
    smooth = _local_std(grey, rule.texture_window) < SMOOTH_STD
    rough_ok = _local_std(grey, _ROUGH_WINDOW) < ROUGH_STD
    seeds = dark & smooth & (grey < rule.grey_seed)
    water = keep_components(dark & rough_ok, seeds, min_area)
    water |= _grow(water, _ROUGH_WINDOW // 2) & dark  # the shore, where the window sees land too
    if not pools:
        return CoarseMask(water, None, None)
    sure_land = valid & ~water & ((grey >= rule.grey_max + SURE_MARGIN) | ~rough_ok)
    return CoarseMask(water, water & seeds, sure_land)


def _spectral_tests(
    data: np.ndarray, rule: CoarseRule, pools: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per pixel of float32 ``data`` (validity not applied) under a spectral rule: ``(passes,
    above_sure, above_land)``, the index and brightness tests of a candidate, the index above
    threshold + :data:`SURE_MARGIN`, and above threshold - :data:`LAND_MARGIN` (None without ``pools``).
    """
    other = _second_band(rule)
    green, second = _band(data, rule, "green"), _band(data, rule, other)
    total, diff = green + second, green - second  # once per tile, for all three comparisons
    passes = _sums_above(total, diff, rule.threshold)
    for band, limit in (("nir", rule.nir_max), ("swir", rule.swir_max)):
        if limit is not None:
            passes &= (second if band == other else _band(data, rule, band)) < limit
    if not pools:
        return passes, None, None
    above_sure = _sums_above(total, diff, rule.threshold + SURE_MARGIN)
    return passes, above_sure, _sums_above(total, diff, rule.threshold - LAND_MARGIN)


def _reflectance_tests(
    data: np.ndarray, rule: CoarseRule, pools: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`_spectral_tests` of the ``dswe`` and ``fmask`` methods: ``(passes, sure, not_land)``.

    ``dswe``: water = the ``dswe_water`` classes, never snow or cloud; sure = high confidence;
    not land = any class but not-water. ``fmask``: Fmask's water test and its strict part; not
    land = NDVI below 0.1 (neither branch of the test rules it out by NDVI).
    """
    r = _reflectances(data, rule)
    if rule.method == "fmask":
        passes, sure = water_tests.fmask_water(r)
        assert r.nir is not None and r.red is not None
        return passes, sure if pools else None, (water_tests.ratio(r.nir, r.red) < 0.1) if pools else None
    code, _ = water_tests.dswe_tests(r)
    if rule.reflectance_source is None:  # ratio tests only: tests 1-3 are free of the scale
        passes = (code & 0b111) == 0b111
        for band, limit in (("nir", rule.nir_max), ("swir", rule.swir_max)):
            if limit is not None:
                passes &= getattr(r, band) < limit * rule.scale
        return passes, passes if pools else None, (code & 0b111) != 0 if pools else None
    classes = water_tests.dswe_classes(code)
    excluded = water_tests.fmask_snow(r)
    cloud = water_tests.fmask_cloud(r)
    if cloud is not None:
        excluded |= cloud
    passes = np.isin(classes, DSWE_WATER_CLASSES[rule.dswe_water]) & ~excluded
    if not pools:
        return passes, None, None
    return passes, (classes == water_tests.HIGH) & ~excluded, classes != water_tests.NOT_WATER


def _reflectances(data: np.ndarray, rule: CoarseRule) -> water_tests.Reflectances:
    """The mapped bands of ``data`` as reflectance under ``rule``."""
    bands = {name: (data[i] - np.float32(rule.offset)) * np.float32(rule.scale) for i, name in enumerate(rule.band_names)}
    return water_tests.Reflectances(**{k: v for k, v in bands.items() if k in water_tests.Reflectances.__dataclass_fields__})


#: Bits of :func:`_spectral_lut`'s codes: :func:`_spectral_tests`'s three tests.
_PASSES, _ABOVE_SURE, _ABOVE_LAND = 1, 2, 4


def _spectral_tests_uint8(
    data: np.ndarray, rule: CoarseRule, pools: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`_spectral_tests` of ``uint8`` bands: one lookup of each pixel's (green, NIR or SWIR) pair."""
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
    """``uint8 (65536,)``: :func:`_spectral_tests`' results for green ``g`` and the second band ``s``
    (uint8 values) at ``g << 8 | s``, as :data:`_PASSES` | :data:`_ABOVE_SURE` | :data:`_ABOVE_LAND`
    bits. A limit on a third band is not in the table."""
    other = _second_band(rule)
    levels = np.arange(256, dtype=np.float32)
    grid = np.stack([np.repeat(levels, 256), np.tile(levels, 256)])  # (green, second) of each code
    pair_rule = replace(rule, band_names=("green", other), nir_max=rule.nir_max if other == "nir" else None,
                        swir_max=rule.swir_max if other == "swir" else None)  # fmt: skip
    passes, above_sure, above_land = _spectral_tests(grid, pair_rule, pools=True)
    codes = passes * np.uint8(_PASSES) | above_sure * np.uint8(_ABOVE_SURE) | above_land * np.uint8(_ABOVE_LAND)
    codes.flags.writeable = False
    return codes


@functools.lru_cache(maxsize=16)
def _darker_lut(rule: CoarseRule, band: str) -> np.ndarray:
    """``uint8 (256,)``: 1 where the uint8 value of ``band`` passes the rule's limit on it."""
    limit = rule.nir_max if band == "nir" else rule.swir_max
    levels = np.arange(256, dtype=np.float32)[None]
    return (_band(levels, replace(rule, band_names=(band,)), band) < limit).view(np.uint8)


def index_above(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """``normalized_difference(a, b) > threshold`` without a division (this runs on every tile).

    For ``-1 < threshold < 1``: (a - b) / (a + b) > t is (a - b) > t (a + b) where a + b > 0, the
    reverse where a + b < 0 (negative reflectances), and 0 > t where a + b = 0 (the index is 0).
    Other thresholds fall back to :func:`normalized_difference`.
    """
    return _sums_above(a + b, a - b, threshold)


def _sums_above(total: np.ndarray, diff: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`index_above` from ``total = a + b`` and ``diff = a - b``."""
    if not -1.0 < threshold < 1.0:
        return _ratio(total, diff) > threshold
    scaled = total * np.float32(threshold)
    above = diff > scaled
    if (total <= 0).any():  # rare
        negative = total < 0
        above[negative] = diff[negative] < scaled[negative]
        above[total == 0] = threshold < 0
    return above


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


#: Percentile of each band whose lowest value over the bands is the image's dark floor.
FLOOR_PERCENTILE = 0.1


def dark_floor(data: np.ndarray, valid: np.ndarray) -> float:
    """The image's additive offset: the lowest :data:`FLOOR_PERCENTILE` over its bands, never below 0."""
    pixels = data[:, valid]
    if pixels.size == 0:
        return 0.0
    return max(0.0, float(np.percentile(pixels, FLOOR_PERCENTILE, axis=1).min()))


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32 in [-1, 1]; 0 where the sum is 0."""
    return _ratio(a + b, a - b)


def _ratio(total: np.ndarray, diff: np.ndarray) -> np.ndarray:
    result = np.zeros(total.shape, np.float32)
    np.divide(diff, total, out=result, where=total != 0)
    return np.clip(result, -1.0, 1.0, out=result)


#: Edge Otsu: Canny's hysteresis thresholds on the index scaled to 0-255, the buffer around edges
#: (pixels), and the fewest buffered pixels worth a histogram.
EDGE_CANNY = (40, 80)
EDGE_BUFFER = 3
EDGE_MIN_PIXELS = 200


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
    near = _grow(edges > 0, EDGE_BUFFER) & valid
    if near.sum() < EDGE_MIN_PIXELS:
        return None
    return bimodal_split(index[near])


def _land_limits(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, threshold: float) -> CoarseRule:
    """``rule`` with ``nir_max`` / ``swir_max``: the medians of NIR and SWIR over the image's land
    (pixels whose MNDWI, else NDWI, is below ``threshold`` - :data:`LAND_MARGIN`), when there are
    enough of them. Clouds, snow and bright soils are brighter than land there; water is not."""
    index = _index(data, replace(rule, method="mndwi" if "swir" in rule.band_names else "ndwi"))
    land = valid & (index < threshold - LAND_MARGIN)
    limits: dict[str, float | None] = {"nir": None, "swir": None}
    for band in limits:
        if band in rule.band_names and land.sum() >= _LAND_MIN_PIXELS:
            limits[band] = float(np.median(_band(data, rule, band)[land]))
    return replace(rule, nir_max=limits["nir"], swir_max=limits["swir"])


def _fit_spectral(data: np.ndarray, valid: np.ndarray, rule: CoarseRule, threshold: float) -> CoarseRule:
    index = _index(data, rule)
    land = valid & (index < threshold - LAND_MARGIN)
    limits: dict[str, float | None] = {"nir": None, "swir": None}
    for band in limits:
        if band in rule.band_names and land.sum() >= _LAND_MIN_PIXELS:
            limits[band] = float(np.median(_band(data, rule, band)[land]))
    if rule.method == "ndwi":
        split = bimodal_split(_band(data, rule, "nir")[valid])
        if split is not None:
            limits["nir"] = split if limits["nir"] is None else min(limits["nir"], split)
    return replace(rule, threshold=float(threshold), nir_max=limits["nir"], swir_max=limits["swir"])


def _fit_rgb(data: np.ndarray, valid: np.ndarray, rule: CoarseRule) -> CoarseRule:
    grey = _grey(data, rule)  # identity scaling: the mean of red, green and blue
    low, high = np.percentile(grey[valid], (2.0, 98.0))
    rule = replace(rule, grey_low=float(low), grey_high=float(max(high, low + 1e-6)))
    grey = _grey(data, rule)
    grey_max = min(float(threshold_otsu(grey[valid])), MAX_WATER_GREY)  # darker than the dark/bright split
    smooth = valid & (_local_std(grey, rule.texture_window) < SMOOTH_STD)
    edge = darkest_mode_edge(grey[smooth])
    grey_seed = grey_max if edge is None else min(edge, grey_max)
    return replace(rule, grey_max=grey_max, grey_seed=float(grey_seed))


def darkest_mode_edge(values: np.ndarray, bins: int = 32) -> float | None:
    """The upper edge of the darkest major mode of ``values`` (None for fewer than 100 values).

    On the smoothed histogram: from the first bin that reaches :data:`MAJOR_PEAK` of the highest,
    climb to the top of that mode, then walk down while the density keeps falling (5 % of slack
    for histogram noise), and stop at a valley or where it drops below :data:`MODE_TAIL` of the
    top. Water is the darkest smooth surface of an RGB image: this is the top of its grey levels,
    whether water fills most of the image or a tenth of it.
    """
    if values.size < _LAND_MIN_PIXELS:
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


def _second_band(rule: CoarseRule) -> str:
    """The band the index compares green with: SWIR for ``mndwi``, NIR for ``ndwi``."""
    return "swir" if rule.method == "mndwi" else "nir"


def _band(data: np.ndarray, rule: CoarseRule, name: str) -> np.ndarray:
    band = data[rule.band_names.index(name)]
    return band - np.float32(rule.offset) if rule.offset else band


def _index(data: np.ndarray, rule: CoarseRule) -> np.ndarray:
    other = _second_band(rule)
    return normalized_difference(_band(data, rule, "green"), _band(data, rule, other))


def _feature(data: np.ndarray, rule: CoarseRule) -> np.ndarray:
    """The image's one-number-per-pixel view of the rule, for its separability: the grey level
    (rgb), NDVI negated (fmask: water is low), else the index (MNDWI for dswe)."""
    if rule.method == "rgb":
        return _grey(data, rule)
    if rule.method == "fmask":
        return -normalized_difference(_band(data, rule, "nir"), _band(data, rule, "red"))
    if rule.method == "dswe":
        return normalized_difference(_band(data, rule, "green"), _band(data, rule, "swir"))
    return _index(data, rule)


def _grey(data: np.ndarray, rule: CoarseRule) -> np.ndarray:
    names = rule.band_names
    total = data[names.index("red")] + data[names.index("green")] + data[names.index("blue")]
    return ((total / 3.0 - rule.grey_low) / (rule.grey_high - rule.grey_low)).astype(np.float32, copy=False)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by ``radius`` pixels (square)."""
    size = 2 * radius + 1
    return cv2.dilate(mask.view(np.uint8), np.ones((size, size), np.uint8)).view(bool)


def _local_std(grey: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of ``grey`` over a ``window`` x ``window`` box (edges reflected)."""
    mean = cv2.blur(grey, (window, window))
    mean_sq = cv2.blur(grey * grey, (window, window))
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def bimodal_split(values: np.ndarray, bins: int = 64) -> float | None:
    """Otsu's split of ``values`` when their histogram has a valley there, else None.

    Otsu always returns a split, even of a single mode (a unimodal Gaussian splits at its mean
    with a between-class share of variance of 2/pi ~ 0.64), so the split is used only when the
    smoothed histogram at the split is below :data:`VALLEY_DEPTH` times the lower of the two
    modes' peaks. Where the best split is an empty gap, its middle is returned (skimage's Otsu
    returns its first bin, right at the edge of the lower mode).
    """
    if values.size < _LAND_MIN_PIXELS:
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


def _separability(values: np.ndarray, upper: np.ndarray) -> float:
    """Between-class variance of the partition ``upper`` / ``~upper`` over the total variance."""
    share = float(upper.mean())
    variance = float(values.var())
    if share in (0.0, 1.0) or variance <= 0:
        return 0.0
    gap = float(values[upper].mean() - values[~upper].mean())
    return share * (1 - share) * gap * gap / variance


