"""Published water, snow and cloud tests (DSWE, Fmask) and the coarse rules built on them."""

from __future__ import annotations

import numpy as np
import pytest

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.io.reflectance import Reflectance
from samgeo_pipeline.water import spectral_tests as wt
from samgeo_pipeline.water.coarse import apply_rule, edge_otsu_threshold, fit_rule, resolve_method

SIX = ("blue", "green", "red", "nir", "swir", "swir2")
# Reflectance (0-1) of blue, green, red, NIR, SWIR1, SWIR2.
SURFACES = {
    "water": (0.06, 0.08, 0.05, 0.03, 0.01, 0.005),
    "turbid": (0.08, 0.12, 0.12, 0.09, 0.04, 0.02),
    "forest": (0.03, 0.06, 0.04, 0.30, 0.15, 0.07),
    "wet_field": (0.05, 0.07, 0.07, 0.12, 0.08, 0.05),  # dark field: tests 4 and 5 only
    "built_up": (0.10, 0.11, 0.13, 0.20, 0.25, 0.20),
    "snow": (0.70, 0.68, 0.65, 0.55, 0.04, 0.03),  # NDSI 0.89: beyond the cloud test's 0.8
    "frost": (0.30, 0.30, 0.29, 0.30, 0.15, 0.10),
    "cloud": (0.45, 0.43, 0.42, 0.45, 0.30, 0.20),
    "hazy_water": (0.14, 0.13, 0.11, 0.06, 0.05, 0.035),  # passes every cloud test, and Fmask's water test
}
REFLECTANCE = Reflectance(1e-4, 0.0, "test")


def spectra(*names: str) -> wt.Reflectances:
    """One pixel per surface, bands as ``(1, n)`` arrays."""
    values = np.array([SURFACES[n] for n in names], np.float32).T[:, None, :]
    return wt.Reflectances(**dict(zip(SIX, values, strict=True)))


def classes(*names: str) -> list[int]:
    code, _ = wt.dswe_tests(spectra(*names))
    return wt.dswe_classes(code)[0].tolist()


class TestDswe:
    def test_class_table_counts_tests_like_dswe(self) -> None:
        table = wt.DSWE_CLASS_OF_CODE
        assert table[0b11111] == table[0b01111] == table[0b10111] == wt.HIGH
        assert all(table[c] == wt.MODERATE for c in range(32) if bin(c).count("1") == 3)
        assert table[0b11000] == wt.WETLAND
        assert table[0b10000] == wt.LOW and table[0b00011] == wt.LOW
        assert table[0b01000] == table[0b00001] == table[0] == wt.NOT_WATER

    def test_surfaces(self) -> None:
        water, turbid, forest, field, built = classes("water", "turbid", "forest", "wet_field", "built_up")
        assert water == wt.HIGH and turbid in (wt.HIGH, wt.MODERATE)
        assert forest == wt.NOT_WATER and built == wt.NOT_WATER
        assert field in (wt.WETLAND, wt.LOW)

    def test_snow_passes_dswe_so_fmask_snow_runs_first(self) -> None:
        assert classes("snow")[0] in (wt.HIGH, wt.MODERATE)  # MNDWI, MBSRV and AWEI all pass on snow
        assert wt.fmask_snow(spectra("snow", "water", "turbid")).tolist() == [[True, False, False]]

    def test_fmask_cloud_catches_cloud_not_water(self) -> None:
        cloud = wt.fmask_cloud(spectra("cloud", "water", "turbid", "forest", "hazy_water"))
        assert cloud is not None and cloud.tolist() == [[True, False, False, False, False]]
        no_blue = spectra("cloud")
        assert wt.fmask_cloud(wt.Reflectances(no_blue.green, no_blue.red, no_blue.nir, no_blue.swir)) is None

    def test_missing_bands_are_reported(self) -> None:
        r = spectra("water")
        _, dropped = wt.dswe_tests(wt.Reflectances(r.green, r.red, r.nir, r.swir))
        assert dropped == ["blue terms of tests 3 and 5", "SWIR2 terms of tests 3 and 5"]
        with pytest.raises(ValueError, match="needs green, red, NIR and SWIR1"):
            wt.dswe_tests(wt.Reflectances(green=r.green))

    def test_fmask_water(self) -> None:
        r = spectra("water", "turbid", "forest", "snow")
        water, sure = wt.fmask_water(wt.Reflectances(red=r.red, nir=r.nir))
        assert water.tolist() == [[True, True, False, False]] and sure.tolist() == [[True, False, False, False]]


def image(layout: dict[str, tuple[slice, slice]], base: str = "forest", names=SIX, shape=(96, 96)) -> np.ndarray:
    """``float32 (bands, rows, cols)`` in reflectance x 10000, ``base`` with surfaces in slices."""
    order = [SIX.index(n) for n in names]
    data = np.empty((len(names), *shape), np.float32)
    data[:] = np.array(SURFACES[base], np.float32)[order, None, None] * 1e4
    for surface, (rows, cols) in layout.items():
        data[:, rows, cols] = np.array(SURFACES[surface], np.float32)[order, None, None] * 1e4
    return data + np.random.default_rng(0).normal(0, 10, data.shape).astype(np.float32)


LAKE, FIELD, SNOW = (slice(10, 40), slice(10, 40)), (slice(50, 90), slice(10, 50)), (slice(50, 90), slice(55, 90))


class TestRules:
    def test_auto_takes_dswe_only_with_reflectance(self) -> None:
        assert resolve_method("auto", SIX, calibrated=True) == "dswe"
        assert resolve_method("auto", SIX, calibrated=False) == "dswe"  # its ratio tests 1-3
        assert resolve_method("auto", ("green", "swir", "nir"), calibrated=False) == "mndwi"
        # 8-bit display products (each band stretched on its own): no cross-band DSWE tests
        assert resolve_method("auto", SIX, calibrated=False, common_scale=False) == "mndwi"
        assert resolve_method("auto", SIX, calibrated=True, common_scale=False) == "dswe"
        assert resolve_method("auto", ("red", "nir", "swir"), calibrated=True) == "fmask"
        with pytest.raises(InputError, match=r"red\+nir works with known reflectance: pass --reflectance-scale"):
            resolve_method("auto", ("red", "nir", "swir"))
        with pytest.raises(InputError, match="index fmask needs reflectance"):
            resolve_method("fmask", SIX)

    def test_dswe_finds_the_lake_and_not_snow_or_dark_fields(self) -> None:
        data = image({"water": LAKE, "wet_field": FIELD, "snow": SNOW})
        valid = np.ones(data.shape[1:], bool)
        rule = fit_rule(data, valid, SIX, reflectance=REFLECTANCE, dswe_water="moderate")
        assert rule.method == "dswe" and rule.uncertain is None and rule.reflectance_source == "test"
        water = apply_rule(data, valid, rule, 1).water
        lake = np.zeros(water.shape, bool)
        lake[LAKE] = True
        assert (water == lake).all()
        wetland = fit_rule(data, valid, SIX, reflectance=REFLECTANCE)  # the default: + potential wetland
        assert wetland.dswe_water == "wetland" and apply_rule(data, valid, wetland, 1).water[FIELD].all()

    def test_wetland_class_only_without_cloud(self) -> None:
        cloudy = image({"water": LAKE, "wet_field": FIELD, "cloud": SNOW})
        valid = np.ones(cloudy.shape[1:], bool)
        rule = fit_rule(cloudy, valid, SIX, reflectance=REFLECTANCE)
        assert rule.dswe_water == "moderate" and any("cloud shadows look alike" in d for d in rule.dropped)
        water = apply_rule(cloudy, valid, rule, 1).water
        assert water[LAKE].all() and not water[FIELD].any() and not water[SNOW].any()
        no_blue = fit_rule(cloudy[1:], valid, SIX[1:], reflectance=REFLECTANCE)
        assert no_blue.dswe_water == "moderate" and any("no blue band" in d for d in no_blue.dropped)

    def test_dswe_without_reflectance_runs_its_ratio_tests(self) -> None:
        data = image({"water": LAKE, "wet_field": FIELD}) + 500  # an unknown offset: the dark floor takes it
        valid = np.ones(data.shape[1:], bool)
        rule = fit_rule(data, valid, SIX)
        assert rule.method == "dswe" and rule.reflectance_source is None and rule.offset > 400
        assert any("tests 4 and 5" in d for d in rule.dropped)
        water = apply_rule(data, valid, rule, 1).water
        assert water[LAKE].all() and water.sum() == water[LAKE].size

    def test_8_bit_display_bands_take_the_fitted_index_and_say_why(self) -> None:
        data = image({"water": LAKE}) / 40  # as if stretched to 0-255
        valid = np.ones(data.shape[1:], bool)
        rule = fit_rule(data, valid, SIX, common_scale=False)
        assert rule.method == "mndwi" and any("display products" in d for d in rule.dropped)
        assert fit_rule(data, valid, SIX).dropped[0].startswith("DSWE tests 4 and 5")

    def test_fmask_method_on_red_nir_swir(self) -> None:
        names = ("red", "nir", "swir")
        data = image({"water": LAKE, "snow": SNOW}, names=names)
        valid = np.ones(data.shape[1:], bool)
        rule = fit_rule(data, valid, names, reflectance=REFLECTANCE)
        water = apply_rule(data, valid, rule, 1).water
        assert rule.method == "fmask" and water[LAKE].all() and water.sum() == water[LAKE].size
        assert "Fmask snow test (needs green)" in rule.dropped

    def test_rgb_with_too_much_dark_smooth_ground_abstains(self) -> None:
        grey = np.full((3, 96, 96), 200, np.float32)
        grey[:, :, :60] = 40  # a dark, smooth field over 62 % of the image
        grey += np.random.default_rng(1).normal(0, 1, grey.shape).astype(np.float32)
        rule = fit_rule(grey, np.ones((96, 96), bool), ("red", "green", "blue"))
        assert rule.uncertain and "62 % of the image is dark and smooth" in rule.uncertain
        assert fit_rule(grey, np.ones((96, 96), bool), ("red", "green", "blue"), rgb_max_water=0.7).uncertain is None

    def test_uncalibrated_index_without_separation_abstains_unless_a_threshold_is_given(self) -> None:
        data = image({}, base="frost", names=("green", "nir", "swir"))
        data[0] += np.random.default_rng(2).normal(0, 800, data.shape[1:]).astype(np.float32)  # noise across the threshold
        valid = np.ones(data.shape[1:], bool)
        rule = fit_rule(data, valid, ("green", "nir", "swir"))
        assert rule.method == "mndwi" and rule.uncertain and "separates the candidate water" in rule.uncertain
        assert fit_rule(data, valid, ("green", "nir", "swir"), threshold=0.0).uncertain is None


class TestEdgeOtsu:
    def test_split_lies_between_water_and_land(self) -> None:
        index = np.full((128, 128), -0.4, np.float32)
        index[30:60, 30:100] = 0.5
        index += np.random.default_rng(0).normal(0, 0.05, index.shape).astype(np.float32)
        split = edge_otsu_threshold(index, np.ones(index.shape, bool))
        assert split is not None and -0.2 < split < 0.3

    def test_no_edges_no_threshold_and_the_rule_abstains(self) -> None:
        flat = np.random.default_rng(0).normal(0, 0.01, (64, 64)).astype(np.float32)
        assert edge_otsu_threshold(flat, np.ones(flat.shape, bool)) is None
        data = image({}, base="forest", names=("green", "nir"))
        rule = fit_rule(data, np.ones(data.shape[1:], bool), ("green", "nir"), edge_otsu=True)
        assert rule.uncertain and "edge Otsu" in rule.uncertain

    def test_threshold_taken_from_the_edges(self) -> None:
        data = image({"water": LAKE}, names=("green", "nir"))
        valid = np.ones(data.shape[1:], bool)
        rule = fit_rule(data, valid, ("green", "nir"), edge_otsu=True)
        assert rule.uncertain is None and rule.threshold != 0.0
        assert apply_rule(data, valid, rule, 1).water[LAKE].all()


def test_normalized_difference() -> None:
    a = np.array([[3.0, 1.0, 0.0, 5.0]], np.float32)
    b = np.array([[1.0, 1.0, 0.0, -4.0]], np.float32)
    np.testing.assert_allclose(wt.normalized_difference(a, b), [[0.5, 0.0, 0.0, 1.0]])  # 0 sum -> 0; 9 -> 1
