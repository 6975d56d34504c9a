"""Band mapping: presets, ``name=index`` strings, auto by band count, missing bands."""

from __future__ import annotations

import pytest

from samgeo_pipeline.errors import ConfigError, InputError
from samgeo_pipeline.io.bands import BAND_PRESETS, BandMap, bands_from_descriptions, described_band, parse_bands


class TestPresets:
    def test_naip(self) -> None:
        assert parse_bands("naip").as_dict() == {"red": 1, "green": 2, "blue": 3, "nir": 4}

    def test_rgb(self) -> None:
        assert parse_bands("rgb").as_dict() == {"red": 1, "green": 2, "blue": 3}

    def test_sentinel2(self) -> None:
        # B2 blue, B3 green, B4 red, B8 NIR, B11 SWIR1 (12th of the 13 L1C bands).
        assert parse_bands("sentinel2").as_dict() == {"red": 4, "green": 3, "blue": 2, "nir": 8, "swir": 12, "swir2": 13}

    def test_landsat8(self) -> None:
        assert parse_bands("landsat8").as_dict() == {"red": 4, "green": 3, "blue": 2, "nir": 5, "swir": 6, "swir2": 7}

    def test_every_preset_parses(self) -> None:
        for name, mapping in BAND_PRESETS.items():
            assert parse_bands(name).as_dict() == mapping
            assert {"green", "red"} <= set(mapping)  # every preset allows an index or HSV


class TestAuto:
    @pytest.mark.parametrize(("count", "preset"), [(3, "rgb"), (4, "naip"), (13, "sentinel2")])
    def test_by_band_count(self, count: int, preset: str) -> None:
        assert parse_bands("auto", count) == parse_bands(preset)
        assert parse_bands(None, count) == parse_bands(preset)

    @pytest.mark.parametrize("count", [1, 2, 5, 7, 12])
    def test_unknown_count(self, count: int) -> None:
        with pytest.raises(InputError, match=rf"cannot guess the band order of a {count}-band file; pass --bands"):
            parse_bands("auto", count)


class TestMapping:
    def test_string(self) -> None:
        bands = parse_bands("swir=1, nir=2,red=3,GREEN=4")
        assert bands == BandMap(red=3, green=4, nir=2, swir=1)
        assert bands.as_dict() == {"red": 3, "green": 4, "nir": 2, "swir": 1}  # fixed name order

    def test_dict(self) -> None:
        assert parse_bands({"green": "2", "nir": 4}) == BandMap(green=2, nir=4)

    def test_str_round_trip(self) -> None:
        bands = BandMap(red=1, green=2, blue=3, nir=4)
        assert str(bands) == "red=1,green=2,blue=3,nir=4"
        assert parse_bands(str(bands)) == bands

    @pytest.mark.parametrize("spec", ["red", "red=a", "red=1,green", "red=-1", "modis", ""])
    def test_bad_syntax(self, spec: str) -> None:
        with pytest.raises(ConfigError, match=r"expected a preset \(rgb, naip, sentinel2, landsat8\) or name=index"):
            parse_bands(spec)

    def test_unknown_name(self) -> None:
        with pytest.raises(ConfigError, match=r"unknown band name\(s\) \['thermal'\]; known: red, green, blue, nir, swir"):
            parse_bands("red=1,thermal=2")


class TestCheck:
    def test_existing_bands_pass(self) -> None:
        BandMap(red=1, green=2, blue=3, nir=4).check(4, "x.tif")

    @pytest.mark.parametrize(("spec", "name", "index"), [("nir=9", "nir", 9), ("red=0,green=2", "red", 0)])
    def test_missing_band(self, spec: str, name: str, index: int) -> None:
        with pytest.raises(InputError, match=rf"^scene.tif: band {name}={index} does not exist \(the file has 4 band\(s\)\)"):
            parse_bands(spec).check(4, "scene.tif")


class TestDescriptions:
    """Band descriptions: read a mapping from them, and refuse a guess they contradict."""

    def test_descriptions_give_the_mapping(self) -> None:
        band_map = parse_bands("auto", 4, ("SWIR1", "NIR", "Red", "Green"))
        assert band_map.as_dict() == {"swir": 1, "nir": 2, "red": 3, "green": 4}
        assert band_map.source == "descriptions"

    def test_guess_without_descriptions_says_so(self) -> None:
        band_map = parse_bands("auto", 4, ("Band 1", None, "", "Band 4"))
        assert band_map.as_dict() == BAND_PRESETS["naip"] and band_map.source == "guessed"
        assert parse_bands("naip").source == "given"

    def test_guess_contradicting_descriptions_is_refused(self) -> None:
        # NIR, red, green described but no red+green pair that maps: the NAIP guess reads band 1 as red
        with pytest.raises(InputError, match=r"^scene.tif: the guessed band mapping .* band 1 as red.*'SWIR2'"):
            parse_bands("auto", 4, ("SWIR2", "NIR", "Band 3", "Band 4"), path="scene.tif")

    def test_duplicate_names_are_not_a_mapping(self) -> None:
        assert bands_from_descriptions(("red", "red", "green")) is None
        assert bands_from_descriptions(("nir", "green")) is None  # no red
        assert described_band("Near Infrared") == "nir" and described_band("coastal") is None
        assert described_band("Band 7") is False
