"""Coarse water mask: method choice, per-image rule fitting, per-tile application, prompt pools."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.water.coarse import (
    CoarseRule,
    _separability,
    apply_rule,
    bimodal_split,
    dark_floor,
    fit_rule,
    index_above,
    normalized_difference,
    resolve_method,
    rule_warnings,
)
from samgeo_pipeline.water.rgb_rule import grey_level as _grey
from samgeo_pipeline.water.rule import grow as _grow

MS = ("blue", "green", "red", "nir", "swir")
RGBN = ("red", "green", "blue", "nir")
RGB = ("red", "green", "blue")

# Reflectance-like spectra (x 10000) of blue, green, red, NIR, SWIR.
SPECTRA = {
    "water": (500, 700, 500, 300, 100),
    "turbid": (700, 1000, 900, 900, 350),  # NIR as high as green; SWIR still low
    "vegetation": (300, 600, 400, 3500, 1800),
    "soil": (900, 1200, 1500, 2200, 3000),
    "cloud": (5000, 5100, 5200, 5400, 4200),  # MNDWI ~ +0.1: passes the index alone
    "snow": (8000, 8200, 8000, 7000, 600),  # MNDWI ~ +0.86
}


def scene(layout: dict[str, tuple[slice, slice]], shape=(120, 120), base="vegetation", names=MS) -> np.ndarray:
    """``float32 (bands, rows, cols)``: ``base`` everywhere, other surfaces in their slices, mild noise."""
    order = [MS.index(n) for n in names]
    data = np.empty((len(names), *shape), np.float32)
    data[:] = np.array(SPECTRA[base], np.float32)[order, None, None]
    for surface, (rows, cols) in layout.items():
        data[:, rows, cols] = np.array(SPECTRA[surface], np.float32)[order, None, None]
    noise = np.random.default_rng(0).normal(0, 15, data.shape).astype(np.float32)
    return data + noise


def coarse(data: np.ndarray, names=MS, valid=None, min_area: int = 1, **fit) -> np.ndarray:
    valid = np.ones(data.shape[1:], bool) if valid is None else valid
    rule = fit_rule(data, valid, names, **fit)
    return apply_rule(data, valid, rule, min_area).water


LAKE = (slice(20, 70), slice(20, 70))


class TestResolveMethod:
    @pytest.mark.parametrize(
        ("names", "expected"),
        [(MS, "dswe"), (("green", "swir"), "mndwi"), (("green", "swir", "nir"), "mndwi"), (RGBN, "ndwi"),
         (("green", "nir"), "ndwi"), (RGB, "rgb")],
    )
    def test_auto(self, names: tuple[str, ...], expected: str) -> None:
        assert resolve_method("auto", names) == expected

    def test_auto_impossible(self) -> None:
        with pytest.raises(InputError, match=r"no water index possible with bands \['nir', 'red'\]"):
            resolve_method("auto", ["red", "nir"])

    def test_explicit_and_missing(self) -> None:
        assert resolve_method("ndwi", MS) == "ndwi" and resolve_method("rgb", RGBN) == "rgb"
        with pytest.raises(InputError, match=r"index mndwi needs band\(s\) \['swir'\]"):
            resolve_method("mndwi", RGBN)


class TestSpectral:
    def test_lake_in_vegetation(self) -> None:
        data = scene({"water": LAKE})
        expected = np.zeros((120, 120), bool)
        expected[LAKE] = True
        np.testing.assert_array_equal(coarse(data), expected)
        np.testing.assert_array_equal(coarse(data[[1, 3]], ("green", "nir")), expected)  # NDWI

    def test_turbid_water_is_water(self) -> None:
        data = scene({"water": LAKE, "turbid": (slice(80, 110), slice(20, 100))})
        result = coarse(data)
        assert result[LAKE].all() and result[80:110, 20:100].all() and result.sum() == 2500 + 2400

    @pytest.mark.parametrize("bright", ["cloud", "snow"])
    def test_clouds_and_snow_are_not_water(self, bright: str) -> None:
        """Both pass MNDWI alone (cloud ~ +0.1, snow ~ +0.86); their NIR is brighter than land's."""
        data = scene({"water": LAKE, bright: (slice(80, 115), slice(10, 110))})
        green, swir = data[1, 90, 50], data[4, 90, 50]
        assert (green - swir) / (green + swir) > -0.1  # the index alone would call it water
        result = coarse(data)
        assert result[LAKE].all() and not result[80:115].any()

    def test_bright_bare_field_with_positive_ndwi_is_not_water(self) -> None:
        """Uncalibrated NIR (NAIP): a bare field whose green exceeds its NIR has NDWI > 0, but its
        NIR is several times water's; the NIR split rejects it, even where such fields cover
        much of the scene."""
        data = scene({"water": LAKE}, names=RGBN)
        field = (slice(75, 120), slice(0, 120))
        data[:, field[0], field[1]] = np.array([2600, 2700, 2300, 2500], np.float32)[:, None, None]
        result = coarse(data, RGBN)
        assert result[LAKE].all() and not result[75:120].any()

    def test_additive_offset_and_scale_do_not_change_the_mask(self) -> None:
        """DN offsets (haze, L1 products) pull ratios toward 0; the dark floor is subtracted."""
        data = scene({"water": LAKE, "turbid": (slice(80, 110), slice(20, 100))})
        reference = coarse(data)
        np.testing.assert_array_equal(coarse(data + 6000.0), reference)
        np.testing.assert_array_equal(coarse(data * 3.0 + 900.0), reference)

    def test_fixed_threshold(self) -> None:
        data = scene({"turbid": LAKE})  # MNDWI ~ 0.77 once the dark floor (~ 255) is subtracted
        assert coarse(data, requested="mndwi")[LAKE].all()
        assert not coarse(data, requested="mndwi", threshold=0.9)[LAKE].any()

    def test_fixed_threshold_is_used(self) -> None:
        data = scene({"water": LAKE})
        valid = np.ones((120, 120), bool)
        rule = fit_rule(data, valid, MS, "mndwi", threshold=0.95)  # water: ~0.87 after the dark floor
        assert rule.threshold == 0.95 and apply_rule(data, valid, rule, 1).water[LAKE].mean() < 0.2

    def test_invalid_pixels_are_never_water(self) -> None:
        data = scene({"water": LAKE})
        valid = np.ones((120, 120), bool)
        valid[:, :40] = False
        result = coarse(data, valid=valid)
        assert not result[:, :40].any() and result[20:70, 40:70].all()

    def test_scene_without_water(self) -> None:
        data = scene({"soil": (slice(0, 60), slice(0, 120))})
        rule = fit_rule(data, np.ones((120, 120), bool), MS)
        assert rule.water_fraction == 0.0 and rule.separability is None
        assert not apply_rule(data, np.ones((120, 120), bool), rule, 1).water.any()


class TestRgb:
    def rgb_scene(self) -> np.ndarray:
        """A dark smooth lake, a dark textured forest, a bright smooth road, on mid-grey grass."""
        rng = np.random.default_rng(1)
        grey = np.full((160, 160), 150.0, np.float32) + rng.normal(0, 12, (160, 160))
        grey[20:80, 20:80] = 60 + rng.normal(0, 1.5, (60, 60))  # lake
        grey[100:150, 10:80] = 60 + rng.normal(0, 45, (50, 70))  # forest: as dark, rough
        grey[90:100, :] = 230 + rng.normal(0, 1.5, (10, 160))  # road
        return np.stack([grey * 1.05, grey, grey * 0.8]).astype(np.float32)

    def test_dark_smooth_water_only(self) -> None:
        result = coarse(self.rgb_scene(), RGB, min_area=64)
        lake = np.zeros((160, 160), bool)
        lake[20:80, 20:80] = True
        assert result[lake].mean() > 0.97
        assert result[~lake].mean() < 0.01

    def test_pools(self) -> None:
        data = self.rgb_scene()
        valid = np.ones((160, 160), bool)
        mask = apply_rule(data, valid, fit_rule(data, valid, RGB), 64)
        assert mask.sure_water[30:70, 30:70].mean() > 0.8 and not (mask.sure_water & ~mask.water).any()
        assert mask.sure_land[90:100].all() and not (mask.sure_land & mask.water).any()  # the bright road


class TestPools:
    def test_sure_water_and_sure_land(self) -> None:
        data = scene({"water": LAKE, "turbid": (slice(80, 110), slice(20, 100))})
        valid = np.ones((120, 120), bool)
        mask = apply_rule(data, valid, fit_rule(data, valid, MS), 1)
        assert mask.sure_water[LAKE].all()
        assert not (mask.sure_water & ~mask.water).any() and not (mask.sure_land & mask.water).any()
        assert mask.sure_land[0:15].all()  # vegetation, far below the threshold

    def test_no_pools_when_not_asked(self) -> None:
        data = scene({"water": LAKE})
        valid = np.ones((120, 120), bool)
        mask = apply_rule(data, valid, fit_rule(data, valid, MS), 1, pools=False)
        assert mask.sure_water is None and mask.sure_land is None and mask.water[LAKE].all()


def test_independent_of_window_when_min_area_le_halo_plus_one() -> None:
    """A core cut out of a window with a halo >= min_area - 1 matches the whole image."""
    rng = np.random.default_rng(3)
    blobs = ndimage.binary_opening(rng.random((120, 120)) < 0.45)
    data = scene({})
    data[:, blobs] = np.array(SPECTRA["water"], np.float32)[:, None]
    valid = np.ones((120, 120), bool)
    rule = fit_rule(data, valid, MS)
    min_area, halo, core = 12, 11, 30
    whole = apply_rule(data, valid, rule, min_area).water
    for r0 in range(0, 120, core):
        for c0 in range(0, 120, core):
            ra, ca = max(0, r0 - halo), max(0, c0 - halo)
            part = (slice(ra, r0 + core + halo), slice(ca, c0 + core + halo))
            window = apply_rule(data[:, part[0], part[1]], valid[part], rule, min_area).water
            np.testing.assert_array_equal(
                window[r0 - ra : r0 - ra + core, c0 - ca : c0 - ca + core], whole[r0 : r0 + core, c0 : c0 + core]
            )


class TestWarnings:
    def test_rgb_always_warns(self) -> None:
        (message,) = rule_warnings(CoarseRule("rgb", RGB, water_fraction=0.1), "a.tif")
        assert message.startswith("a.tif: RGB only") and "quicklook.png" in message and "marked" not in message
        (message,) = rule_warnings(CoarseRule("rgb", RGB, water_fraction=0.6), "a.tif")
        assert "(60 % of it marked water: likely dark fields, forest or haze)" in message

    def test_low_separability_warns(self) -> None:
        assert rule_warnings(CoarseRule("ndwi", RGBN, threshold=0.0, separability=0.9), "a.tif") == []
        assert rule_warnings(CoarseRule("ndwi", RGBN, threshold=0.0, separability=None), "a.tif") == []
        (message,) = rule_warnings(CoarseRule("mndwi", MS, threshold=-0.1, separability=0.2), "a.tif")
        assert "poorly separated by MNDWI (separability 0.20 < 0.5)" in message

    def test_separability_of_a_clear_scene_is_high(self) -> None:
        data = scene({"water": LAKE})
        rule = fit_rule(data, np.ones((120, 120), bool), MS)
        assert rule.separability > 0.9 and rule.water_fraction == pytest.approx(2500 / 14400)


class TestRuleDetails:
    """Exact values of the rule's parts, each on a case a regression would change."""

    def test_separability_values(self) -> None:
        values = np.array([0.0, 1.0, 2.0, 3.0])
        assert _separability(values, values >= 2) == pytest.approx(0.8)  # 0.25 * 2^2 / 1.25
        assert _separability(values[:3], values[:3] >= 2) == pytest.approx(0.75)  # (1/3)(2/3)1.5^2/(2/3)
        assert _separability(values, values > 5) == 0.0 and _separability(values, values >= 0) == 0.0
        assert _separability(np.ones(4), np.arange(4) >= 2) == 0.0  # no variance

    @pytest.mark.parametrize("threshold", [0.5, 0.25, 0.0, -0.5, 1.0, -1.0])
    def test_index_above_at_exact_ties(self, threshold: float) -> None:
        """Ties and signs where the division-free form must agree exactly with the index."""
        a = np.array([3, -3, 0, 0.6, 5, 0.2, -4, 1], np.float32)
        b = np.array([1, -1, 0, 0.2, -4, 0.6, 5, 3], np.float32)  # indexes 0.5, 0.5, 0, 0.5, 1, -0.5, -1, -0.5
        np.testing.assert_array_equal(index_above(a, b, threshold), normalized_difference(a, b) > threshold)
        zero = np.zeros(3, np.float32)  # only zero sums, no negative one
        assert (index_above(zero, zero, threshold) == (threshold < 0)).all()

    def test_normalized_difference_is_clipped_float32(self) -> None:
        result = normalized_difference(np.array([-4.0, 5.0], np.float32), np.array([5.0, -4.0], np.float32))
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, [-1.0, 1.0])

    def test_grey_is_the_scaled_mean_of_red_green_blue(self) -> None:
        data = np.array([10.0, 20.0, 30.0, 99.0], np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
        grey = _grey(data, CoarseRule("rgb", ("red", "green", "blue", "nir"), grey_low=10.0, grey_high=30.0))
        assert grey.dtype == np.float32
        np.testing.assert_array_equal(grey, 0.5)  # (20 - 10) / (30 - 10)

    def test_dark_floor(self) -> None:
        data = np.stack([np.arange(100.0), np.arange(1000.0, 1100.0)]).reshape(2, 10, 10).astype(np.float32)
        valid = np.ones((10, 10), bool)
        assert dark_floor(data, valid) == pytest.approx(0.099)  # band 0's 0.1th percentile
        assert dark_floor(data - 50, valid) == 0.0
        assert dark_floor(np.full((2, 10, 10), 0.5, np.float32), valid) == 0.5
        assert dark_floor(data, ~valid) == 0.0
        assert dark_floor(np.full((1, 1, 1), 7.0, np.float32), np.ones((1, 1), bool)) == 7.0

    def test_fit_rule_defaults_and_offset(self) -> None:
        data = scene({"water": LAKE})
        valid = np.ones((120, 120), bool)
        rule = fit_rule(data, valid, MS)
        assert rule.texture_window == 13 and rule.offset == pytest.approx(dark_floor(data, valid))
        assert fit_rule(data, valid, MS, texture_window=7).texture_window == 7
        everywhere = np.empty_like(data)
        everywhere[:] = np.array(SPECTRA["water"], np.float32)[:, None, None]
        assert fit_rule(everywhere, valid, MS).separability is None  # all water: nothing to separate
        assert fit_rule(data, valid, MS, offset=-5.0).offset == 0.0
        assert fit_rule(data, valid, MS, offset=2.5).offset == 2.5

    @pytest.mark.parametrize("water_pixels", [1, 999])
    def test_separability_at_the_water_fraction_limits(self, water_pixels: int) -> None:
        """0.1 % and 99.9 % water (exactly MIN_WATER_FRACTION from each end) still get a separability;
        a one-pixel lake counts with the default min_area."""
        data = np.empty((5, 10, 100), np.float32)
        data[:] = np.array(SPECTRA["vegetation"], np.float32)[:, None, None]
        flat = data.reshape(5, -1)
        flat[:, :water_pixels] = np.array(SPECTRA["water"], np.float32)[:, None]
        rule = fit_rule(data, np.ones((10, 100), bool), MS)
        assert rule.water_fraction == water_pixels / 1000 and rule.separability is not None

    def test_land_limits_are_land_medians(self) -> None:
        """SWIR limit: the median SWIR (less the dark floor) of land, the pixels whose index is below
        the threshold by more than LAND_MARGIN; NDWI's NIR limit: the lower of land's median and the
        NIR split."""
        data = scene({"water": LAKE, "cloud": (slice(80, 115), slice(10, 110))})
        valid = np.ones((120, 120), bool)
        rule = fit_rule(data, valid, MS, "mndwi")
        green, nir, swir = (data[MS.index(n)] - np.float32(rule.offset) for n in ("green", "nir", "swir"))
        land = normalized_difference(green, swir) < rule.threshold - 0.1
        assert rule.swir_max == pytest.approx(float(np.median(swir[land])), rel=1e-6)
        assert rule.nir_max == pytest.approx(float(np.median(nir[land])), rel=1e-6)
        names = ("green", "nir")
        two = data[[1, 3]]
        ndwi = fit_rule(two, valid, names)
        green, nir = (two[i] - np.float32(ndwi.offset) for i in (0, 1))
        land = normalized_difference(green, nir) < ndwi.threshold - 0.1
        split = bimodal_split(nir.ravel())
        assert split is not None and ndwi.swir_max is None
        assert ndwi.nir_max == pytest.approx(min(float(np.median(nir[land])), split), rel=1e-6)

    def test_exactly_100_land_pixels_give_limits(self) -> None:
        data = np.empty((5, 10, 100), np.float32)
        data[:] = np.array(SPECTRA["water"], np.float32)[:, None, None]
        data.reshape(5, -1)[:, :100] = np.array(SPECTRA["vegetation"], np.float32)[:, None]
        rule = fit_rule(data, np.ones((10, 100), bool), MS)
        assert rule.swir_max is not None and rule.nir_max is not None

    def test_grow(self) -> None:
        mask = np.zeros((9, 9), bool)
        mask[4, 4] = True
        grown = _grow(mask, 2)
        assert grown.dtype == bool and grown.sum() == 25 and grown[2:7, 2:7].all()


class TestSpectralPools:
    def test_mndwi_uses_swir_not_nir(self) -> None:
        """Turbid water whose NIR exceeds its green (NDWI < 0) but whose SWIR is low: MNDWI water."""
        SPECTRA_NIR_BRIGHT = (700, 900, 900, 1200, 300)
        data = scene({"water": LAKE})
        data[:, 80:110, 20:100] = np.array(SPECTRA_NIR_BRIGHT, np.float32)[:, None, None]
        valid = np.ones((120, 120), bool)
        rule = fit_rule(data, valid, MS, "mndwi")
        assert rule.method == "mndwi" and rule.separability > 0.95
        mask = apply_rule(data, valid, rule, 1)
        assert mask.water[80:110, 20:100].all() and mask.water.sum() == 2500 + 2400
        assert mask.sure_water[80:110, 20:100].all()

    def test_pools_exclude_rejected_and_near_threshold_pixels(self) -> None:
        """Clouds pass the index but not NIR: neither water, sure water nor sure land. A moist surface
        just below the threshold (MNDWI ~ -0.14) is not water and not sure land either. Invalid
        pixels are in no pool."""
        data = scene({"water": LAKE, "cloud": (slice(80, 115), slice(10, 60))})
        data[:, 80:115, 60:110] = np.array([900, 1000, 1100, 2000, 1300], np.float32)[:, None, None]
        valid = np.ones((120, 120), bool)
        valid[:, 115:] = False
        rule = fit_rule(data, valid, MS, "mndwi")
        mask = apply_rule(data, valid, rule, 1)
        for surface in (mask.water, mask.sure_water, mask.sure_land):
            assert not surface[80:115, 10:110].any() and not surface[:, 115:].any()
        assert mask.sure_land[0:15, :115].all()


def test_warnings_at_their_limits() -> None:
    """40 % water is not yet suspect; separability 0.5 is not yet poor."""
    (message,) = rule_warnings(CoarseRule("rgb", RGB, water_fraction=0.4), "a.tif")
    assert message == (
        "a.tif: RGB only, so water is found by darkness and smoothness, not by its spectrum; "
        "shadows and dark smooth fields can pass: check quicklook.png, or map NIR/SWIR with --bands"
    )
    assert rule_warnings(CoarseRule("ndwi", RGBN, threshold=0.0, separability=0.5), "a.tif") == []


class TestIntegerBands:
    """Tiles in the file's dtype give the masks of their float32 copy (uint8: by a lookup table)."""

    RULES = [
        CoarseRule("ndwi", RGBN, offset=16.0, threshold=0.0, nir_max=83.3125),  # NAIP-like
        CoarseRule("ndwi", RGBN, offset=2.5, threshold=-0.35),
        CoarseRule("ndwi", RGBN, threshold=0.95),  # threshold + SURE_MARGIN >= 1: the division path
        CoarseRule("mndwi", MS, offset=3.0, threshold=-0.1, nir_max=120.0, swir_max=60.0),  # NIR: a third band
        CoarseRule("ndwi", MS, threshold=0.1, nir_max=90.0, swir_max=70.0),  # SWIR: a third band
    ]

    @pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.method}-{r.threshold}")
    @pytest.mark.parametrize("pools", [True, False])
    def test_uint8_equals_its_float32_copy_for_every_pair(self, rule: CoarseRule, pools: bool) -> None:
        names = rule.band_names
        rng = np.random.default_rng(5)
        native = rng.integers(0, 256, (len(names), 256, 256), dtype=np.uint8)
        other = "swir" if rule.method == "mndwi" else "nir"
        native[names.index("green")] = np.arange(256, dtype=np.uint8)[:, None]  # every (green, other) pair
        native[names.index(other)] = np.arange(256, dtype=np.uint8)[None, :]
        valid = rng.random((256, 256)) > 0.1
        got = apply_rule(native, valid, rule, min_area=3, pools=pools)
        expected = apply_rule(native.astype(np.float32), valid, rule, min_area=3, pools=pools)
        assert 0.005 < expected.water.mean() < 0.98
        np.testing.assert_array_equal(got.water, expected.water)
        np.testing.assert_array_equal(got.components.labels, expected.components.labels)
        np.testing.assert_array_equal(got.components.areas, expected.components.areas)
        if pools:
            assert expected.sure_land.any() and (expected.sure_water.any() or rule.threshold > 0.9)
            np.testing.assert_array_equal(got.sure_water, expected.sure_water)
            np.testing.assert_array_equal(got.sure_land, expected.sure_land)
        else:
            assert got.sure_water is None and got.sure_land is None

    @pytest.mark.parametrize("dtype", ["uint16", "int16", "int32"])
    def test_other_integers_equal_their_float32_copy(self, dtype: str) -> None:
        data = scene({"water": LAKE, "turbid": (slice(80, 110), slice(20, 100))})
        valid = np.ones((120, 120), bool)
        rule = fit_rule(data, valid, MS)
        native = data.round().astype(dtype)
        got = apply_rule(native, valid, rule, 1)
        expected = apply_rule(native.astype(np.float32), valid, rule, 1)
        assert got.water[LAKE].all()
        for a, b in ((got.water, expected.water), (got.sure_water, expected.sure_water),
                     (got.sure_land, expected.sure_land)):
            np.testing.assert_array_equal(a, b)

    def test_rgb_rule_on_uint8(self) -> None:
        data = np.full((3, 60, 60), 180, np.uint8)
        data[:, 10:40, 10:40] = 30
        rule = CoarseRule("rgb", RGB, grey_low=0.0, grey_high=255.0, grey_max=0.4, grey_seed=0.3, texture_window=5)
        valid = np.ones((60, 60), bool)
        got = apply_rule(data, valid, rule, 1)
        assert got.water[10:40, 10:40].all() and got.water.sum() == 900
        np.testing.assert_array_equal(got.sure_land, apply_rule(data.astype(np.float32), valid, rule, 1).sure_land)
