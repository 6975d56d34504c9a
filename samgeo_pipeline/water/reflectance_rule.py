"""The ``dswe`` and ``fmask`` coarse-mask methods: the published tests of
:mod:`samgeo_pipeline.water.spectral_tests` applied to an image's bands under its rule.

Arrays as in :mod:`samgeo_pipeline.water.rule`: ``data`` ``float32 (bands, rows, cols)`` in file
units, bands in ``rule.band_names`` order; masks ``bool (rows, cols)``.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from samgeo_pipeline.water import spectral_tests as water_tests
from samgeo_pipeline.water.rule import CoarseRule

#: ``dswe_water``: the DSWE classes counted as water.
DSWE_WATER_CLASSES: dict[str, tuple[int, ...]] = {
    "high": (water_tests.HIGH,),
    "moderate": (water_tests.HIGH, water_tests.MODERATE),
    "wetland": (water_tests.HIGH, water_tests.MODERATE, water_tests.WETLAND),
}


#: Why an 8-bit image with DSWE's bands takes a fitted index instead.
DISPLAY_DROPPED = "DSWE: 8-bit bands are display products, each stretched to its own range, and DSWE compares bands"
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


def gate_wetland(data: np.ndarray, valid: np.ndarray, rule: CoarseRule) -> CoarseRule:
    """``rule`` with ``dswe_water`` lowered to moderate when the image's cloud share (or a missing
    blue band) leaves cloud shadows possible (:data:`WETLAND_MAX_CLOUD`)."""
    cloud = water_tests.fmask_cloud(reflectances_of(data, rule))
    share = float(cloud[valid].mean()) if cloud is not None and valid.any() else None
    if share is not None and share <= WETLAND_MAX_CLOUD:
        return rule
    why = "no blue band for the cloud test" if share is None else f"{100 * share:.1f} % cloud"
    dropped = (*rule.dropped, f"potential wetland class ({why}: cloud shadows look alike)")
    return replace(rule, dswe_water="moderate", dropped=dropped)


def dropped_tests(method: str, band_names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
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


def reflectance_tests(
    data: np.ndarray, rule: CoarseRule, pools: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`index_tests` of the ``dswe`` and ``fmask`` methods: ``(passes, sure, not_land)``.

    ``dswe``: water = the ``dswe_water`` classes, never snow or cloud; sure = high confidence;
    not land = any class but not-water. ``fmask``: Fmask's water test and its strict part; not
    land = NDVI below 0.1 (neither branch of the test rules it out by NDVI).
    """
    r = reflectances_of(data, rule)
    if rule.method == "fmask":
        passes, sure = water_tests.fmask_water(r)
        assert r.nir is not None and r.red is not None
        return passes, sure if pools else None, (r.ndvi < 0.1) if pools else None
    code, _ = water_tests.dswe_tests(r)
    if rule.reflectance_source is None:  # ratio tests only: tests 1-3 are free of the scale
        passes = (code & 0b111) == 0b111
        for band, limit in (("nir", rule.nir_max), ("swir", rule.swir_max)):
            if limit is not None:
                passes &= getattr(r, band) < limit * rule.scale
        return passes, passes if pools else None, (code & 0b111) != 0 if pools else None
    passes = np.take(_water_by_code(rule.dswe_water), code)
    _drop_snow_and_cloud(passes, r)
    if not pools:
        return passes, None, None
    classes = water_tests.dswe_classes(code)  # high confidence is water under every dswe_water
    return passes, (classes == water_tests.HIGH) & passes, classes != water_tests.NOT_WATER


def _drop_snow_and_cloud(water: np.ndarray, r: water_tests.Reflectances) -> None:
    """Set ``water`` (``bool``, C-contiguous) False where Fmask's snow or cloud tests pass.

    The tests run on the water pixels only (a few percent of most tiles): they are what costs
    most per pixel, and elsewhere their answer would change nothing.
    """
    flat = water.reshape(-1)
    at = np.flatnonzero(flat)
    if at.size == 0:
        return
    bands = {name: getattr(r, name) for name in water_tests.Reflectances.__dataclass_fields__}
    some = water_tests.Reflectances(**{k: v.reshape(-1)[at] for k, v in bands.items() if v is not None})
    excluded = water_tests.fmask_snow(some)
    cloud = water_tests.fmask_cloud(some)
    if cloud is not None:
        excluded |= cloud
    flat[at[excluded]] = False


@functools.lru_cache(maxsize=4)
def _water_by_code(dswe_water: str) -> np.ndarray:
    """``bool (32,)``: whether each DSWE diagnostic code's class counts as water."""
    return np.isin(water_tests.DSWE_CLASS_OF_CODE, DSWE_WATER_CLASSES[dswe_water])


def reflectances_of(data: np.ndarray, rule: CoarseRule) -> water_tests.Reflectances:
    """The mapped bands of ``data`` as reflectance under ``rule``."""
    fields = water_tests.Reflectances.__dataclass_fields__
    offset, scale = np.float32(rule.offset), np.float32(rule.scale)
    bands = {}
    for i, name in enumerate(rule.band_names):
        if name in fields:
            band = np.subtract(data[i], offset, dtype=np.float32)
            bands[name] = band if scale == 1 else np.multiply(band, scale, out=band)
    return water_tests.Reflectances(**bands)
