"""SegmentConfig: defaults, validation, layering (defaults < YAML < flags), parameter hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from samgeo_pipeline.config import DEFAULT_MODEL, SegmentConfig, config_field_docs, load_config_file
from samgeo_pipeline.errors import ConfigError, SamgeoPipelineError


class TestDefaults:
    def test_issue_defaults(self) -> None:
        config = SegmentConfig()
        assert config.tile_size == 1024
        assert config.halo == 128
        assert config.core_size == 1024 - 2 * 128
        assert config.model == DEFAULT_MODEL == "facebook/sam-vit-base"
        assert config.uses_sam
        assert config.min_area <= config.halo + 1  # keeps --model none independent of tiling

    def test_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            SegmentConfig().tile_size = 512  # type: ignore[misc]

    @pytest.mark.parametrize("model", ["none", "None", "NONE"])
    def test_model_none(self, model: str) -> None:
        assert not SegmentConfig(model=model).uses_sam


class TestValidation:
    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"tile_size": 16}, r"tile_size=16: must be >= 32 and <= 8192"),
            ({"tile_size": 256, "halo": 128}, r"halo=128: must be >= 0 and below half the tile_size \(256\)"),
            ({"halo": -1}, r"halo=-1"),
            ({"gsd": 0.0}, r"gsd=0.0: must be > 0 \(metres per working pixel\)"),
            ({"gsd": -2.0}, r"gsd=-2.0"),
            ({"points": 0}, r"prompt=points needs points >= 1"),
            ({"negatives": -1}, r"negatives=-1: must be >= 0"),
            ({"max_components": 0}, r"max_components=0: must be >= 1"),
            ({"index": "ndvi"}, r"index='ndvi': choose one of auto, dswe, fmask, ndwi, mndwi, rgb"),
            ({"prompt": "mask"}, r"prompt='mask': choose one of points, box"),
            ({"point_merge": "max"}, r"point_merge='max': choose one of joint, mean, best"),
            ({"precision": "fp8"}, r"precision='fp8'"),
            ({"batch_size": 0}, r"batch_size=0: must be >= 1"),
            ({"prefetch": 0}, r"prefetch=0: must be >= 1"),
        ],
    )
    def test_bad_values(self, options: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            SegmentConfig(**options)

    def test_error_kinds(self) -> None:
        with pytest.raises(SamgeoPipelineError):
            SegmentConfig(tile_size=1)
        with pytest.raises(ValueError):
            SegmentConfig(tile_size=1)

    @pytest.mark.parametrize(
        ("values", "match"),
        [
            ({"gsd": "nan"}, r"^gsd=nan: must be a finite number > 0 \(metres per working pixel\)$"),
            ({"gsd": "inf"}, r"^gsd=inf: must be a finite number > 0"),
            ({"gsd": "-inf"}, r"^gsd=-inf: must be a finite number > 0"),
            ({"stats_size": "0"}, r"^stats_size=0: must be >= 64"),
            ({"threshold": "nan"}, r"^threshold=nan: must be a finite number >= -1 and <= 1"),
            ({"threshold": "1.5"}, r"^threshold=1.5: must be >= -1 and <= 1"),
            ({"max_pixels": "inf"}, r"^max_pixels=inf: must be a finite number > 0"),
            ({"simplify": "nan"}, r"^simplify=nan: must be a finite number >= 0"),
            ({"simplify": "-1"}, r"^simplify=-1.0: must be >= 0"),
            ({"seed": "-1"}, r"^seed=-1: must be >= 0"),
            ({"erosion": "-2"}, r"^erosion=-2: must be >= 0"),
            ({"read_workers": "-1"}, r"^read_workers=-1: must be >= 0"),
            ({"max_tiles": "0"}, r"^max_tiles=0: must be >= 1"),
            ({"tile_size": "nan"}, r"^option tile_size='nan': invalid literal"),
            ({"tile_size": float("inf")}, r"^option tile_size=inf: must be a whole number"),  # YAML .inf
            ({"halo": 1.5}, r"^option halo=1.5: must be a whole number"),  # YAML 1.5 was cut to 1
        ],
    )
    def test_nan_inf_zero_and_out_of_range(self, values: dict, match: str) -> None:
        """Issue 21: --gsd nan raised a raw ValueError; inf, --stats-size 0 and --threshold nan were
        accepted and gave 0 % water. Every numeric option is checked against its declared range."""
        with pytest.raises(ConfigError, match=match):
            SegmentConfig().merged(values)

    def test_every_numeric_option_has_a_range(self) -> None:
        """Issue 21: one mechanism for every numeric option; a new one without a declared range fails here."""
        from samgeo_pipeline.config import IMAGE_RANGES, SEGMENT_RANGES
        from samgeo_pipeline.finetune.config import FINETUNE_RANGES, FinetuneConfig

        any_value = {"nodata", "label_ignore"}  # a nodata value may be NaN; a label value any int
        numbers = {"int", "float", "int | None", "float | None"}
        for cls, ranges in ((SegmentConfig, IMAGE_RANGES | SEGMENT_RANGES),
                            (FinetuneConfig, IMAGE_RANGES | FINETUNE_RANGES)):  # fmt: skip
            numeric = {f.name for f in dataclasses.fields(cls) if f.type in numbers}
            assert len(numeric) > 20 and numeric - any_value == set(ranges), cls

    def test_box_prompt_allows_zero_points(self) -> None:
        assert SegmentConfig(prompt="box", points=0).points == 0

    @pytest.mark.parametrize("value", ["2,98,50", "98,2", "50,50", "-1,99", "2,101", "2"])
    def test_percentiles_must_be_low_then_high(self, value: str) -> None:
        """Issue 11: ``"2,98,50"`` passed validation and then failed every input; ``"98,2"`` was accepted."""
        with pytest.raises(ConfigError, match=r"percentiles=.*: give two values low,high with 0 <= low < high <= 100"):
            SegmentConfig().merged({"percentiles": value})
        assert SegmentConfig().merged({"percentiles": "0,100"}).percentiles == (0.0, 100.0)

    def test_size_limits(self) -> None:
        """Issue 11: --tile-size 100000 ended in a 112 GiB allocation; the limits are options."""
        with pytest.raises(ConfigError, match=r"tile_size=100000: must be >= 32 and <= 8192"):
            SegmentConfig().merged({"tile_size": "100000"})
        assert SegmentConfig(tile_size=8192).tile_size == 8192
        assert SegmentConfig().max_pixels >= 50_000 * 50_000
        raised = SegmentConfig().merged({"max_pixels": "1e11", "max_tiles": "5000000"})
        assert (raised.max_pixels, raised.max_tiles) == (1e11, 5_000_000)
        assert raised.params_hash() == SegmentConfig().params_hash()  # limits do not change outputs
        with pytest.raises(ConfigError, match=r"max_pixels=0.0"):
            SegmentConfig(max_pixels=0.0)


class TestMerged:
    def test_strings_are_coerced(self) -> None:
        config = SegmentConfig().merged(
            {
                "tile-size": "512",
                "halo": "64",
                "gsd": "0.5",
                "nodata": "-9999",
                "threshold": "0.1",
                "percentiles": "1,99",
                "texture_window": "15",
                "probability": "yes",
                "overwrite": "false",
                "erosion": "3",
                "simplify": "1.5",
                "model": "none",
            }
        )
        assert config.tile_size == 512 and config.halo == 64
        assert config.gsd == 0.5 and config.nodata == -9999.0 and config.threshold == 0.1
        assert config.percentiles == (1.0, 99.0)
        assert config.texture_window == 15
        assert config.probability is True and config.overwrite is False
        assert config.erosion == 3 and config.simplify == 1.5
        assert config.model == "none"

    def test_yaml_types_are_coerced(self) -> None:
        config = SegmentConfig().merged({"percentiles": [5, 95], "index": "rgb", "min_area": 10.0})
        assert config.percentiles == (5.0, 95.0) and config.index == "rgb"
        assert config.min_area == 10 and isinstance(config.min_area, int)

    def test_none_values_are_ignored(self) -> None:
        base = SegmentConfig(tile_size=512, halo=64)
        assert base.merged({"tile_size": None, "halo": None}) == base

    def test_unknown_key(self) -> None:
        with pytest.raises(ConfigError, match=r"unknown option 'tilesize'; known: .*tile_size"):
            SegmentConfig().merged({"tilesize": 512})

    def test_bad_value(self) -> None:
        with pytest.raises(ConfigError, match=r"option tile_size='big'"):
            SegmentConfig().merged({"tile_size": "big"})

    def test_merged_values_are_validated(self) -> None:
        with pytest.raises(ConfigError, match=r"halo=600"):
            SegmentConfig().merged({"halo": 600})


class TestParamsHash:
    def test_stable_and_sensitive(self) -> None:
        base = SegmentConfig(model="none")
        assert base.params_hash() == SegmentConfig(model="none").params_hash()
        assert base.params_hash() != base.merged({"min_area": 10}).params_hash()
        assert base.params_hash() != base.merged({"tile_size": 512}).params_hash()
        assert base.params_hash() != base.merged({"model": "facebook/sam-vit-base"}).params_hash()

    @pytest.mark.parametrize("options", [{"overwrite": True}, {"batch_size": 16}, {"prefetch": 2}, {"progress": False}])
    def test_runtime_options_excluded(self, options: dict) -> None:
        base = SegmentConfig(model="none")
        assert base.merged(options).params_hash() == base.params_hash()

    def test_to_dict_is_json_ready(self) -> None:
        values = SegmentConfig().to_dict()
        assert values["percentiles"] == [2.0, 98.0]
        assert {f.name for f in dataclasses.fields(SegmentConfig)} == set(values)


class TestConfigFile:
    def test_load(self, tmp_path: Path) -> None:
        path = tmp_path / "c.yaml"
        path.write_text("tile_size: 512\nhalo: 64\nbands:\n  red: 1\n  green: 2\n  nir: 4\nmodel: none\n")
        values = load_config_file(path)
        assert values == {"tile_size": 512, "halo": 64, "bands": "red=1,green=2,nir=4", "model": "none"}
        config = SegmentConfig().merged(values)
        assert config.bands == "red=1,green=2,nir=4" and config.tile_size == 512

    def test_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.yaml"
        path.write_text("")
        assert load_config_file(path) == {}

    def test_not_a_mapping(self, tmp_path: Path) -> None:
        path = tmp_path / "list.yaml"
        path.write_text("- a\n- b\n")
        with pytest.raises(ConfigError, match=r"list.yaml: a config file must be a mapping"):
            load_config_file(path)

    def test_bad_yaml(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("tile_size: [1, 2\n")
        with pytest.raises(ConfigError, match=r"bad.yaml: cannot read config file"):
            load_config_file(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"missing.yaml: cannot read config file"):
            load_config_file(tmp_path / "missing.yaml")


def test_field_docs_cover_every_option() -> None:
    docs = config_field_docs()
    assert set(docs) == {f.name for f in dataclasses.fields(SegmentConfig)}
    assert "halo" in docs["min_area"]
    assert all(text.strip() for text in docs.values())
