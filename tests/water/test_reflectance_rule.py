"""The ``dswe`` and ``fmask`` methods under an image's rule (:mod:`samgeo_pipeline.water.reflectance_rule`):
what the bands leave out, the wetland gate, the tests on reflectance. The published tests themselves are in
``tests/water/test_spectral_tests.py``."""

from __future__ import annotations

import numpy as np

from samgeo_pipeline.water.reflectance_rule import (
    dropped_tests,
    gate_wetland,
    reflectance_tests,
    reflectances_of,
)
from samgeo_pipeline.water.rule import CoarseRule
from tests.water.test_spectral_tests import LAKE, SIX, SNOW, image

DSWE = CoarseRule("dswe", SIX, scale=1e-4, reflectance_source="test")


def test_what_the_bands_leave_out() -> None:
    assert dropped_tests("dswe", SIX) == ()
    assert dropped_tests("dswe", ("green", "red", "nir", "swir")) == (
        "blue terms of DSWE tests 3 and 5", "swir2 terms of DSWE tests 3 and 5", "Fmask cloud test (needs blue)")  # fmt: skip
    assert dropped_tests("fmask", ("red", "nir", "swir")) == ("Fmask snow test (needs green)",)
    assert dropped_tests("fmask", SIX) == ("Fmask snow test (needs green)",)


def test_reflectance_is_the_mapped_bands_scaled_after_the_offset() -> None:
    data = np.full((3, 2, 2), 1100.0, np.float32)
    r = reflectances_of(data, CoarseRule("dswe", ("green", "pan", "nir"), offset=100.0, scale=1e-4))
    np.testing.assert_allclose(r.green, 0.1)
    np.testing.assert_allclose(r.nir, 0.1)
    assert r.red is None and r.blue is None  # unmapped; "pan" is no reflectance band


def test_wetland_only_on_nearly_cloudless_images() -> None:
    clear = image({"water": LAKE})
    valid = np.ones(clear.shape[1:], bool)
    assert gate_wetland(clear, valid, DSWE) is DSWE
    cloudy = image({"water": LAKE, "cloud": (slice(50, 90), slice(10, 90))})
    gated = gate_wetland(cloudy, valid, DSWE)
    assert gated.dswe_water == "moderate" and gated.dropped[-1].startswith("potential wetland class (")
    assert "% cloud: cloud shadows look alike)" in gated.dropped[-1]
    no_blue = CoarseRule("dswe", SIX[1:], scale=1e-4, reflectance_source="test")
    assert "no blue band" in gate_wetland(clear[1:], valid, no_blue).dropped[-1]


def test_dswe_water_is_never_snow_and_the_pools_follow_the_classes() -> None:
    data = image({"water": LAKE, "snow": SNOW})
    passes, sure, not_land = reflectance_tests(data, DSWE, pools=True)
    lake = np.zeros(passes.shape, bool)
    lake[LAKE] = True
    assert passes[lake].mean() > 0.99 and not passes[SNOW].any() and passes[~lake].mean() < 0.01
    assert sure is not None and not_land is not None and (sure <= passes).all() and (passes <= not_land).all()
    assert reflectance_tests(data, DSWE, pools=False)[1:] == (None, None)
