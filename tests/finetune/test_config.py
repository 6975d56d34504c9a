"""FinetuneConfig: layering, validation, the segment options it shares; the CLI registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from samgeo_pipeline.cli import build_parser
from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.finetune.cli import finetune_config_from_args
from samgeo_pipeline.finetune.config import FinetuneConfig, load_finetune_file


class TestFinetuneConfig:
    def test_merged_coerces_strings(self) -> None:
        config = FinetuneConfig().merged({"lr": "1e-3", "percentiles": "1,99", "erosion": "2", "resume": "yes",
                                          "max-images": "5", "composite": "nir,swir,green"})  # fmt: skip
        assert config.lr == 1e-3 and config.percentiles == (1.0, 99.0) and config.erosion == 2
        assert config.resume is True and config.max_images == 5 and config.composite == "nir,swir,green"

    @pytest.mark.parametrize(
        ("values", "match"),
        [
            ({"cache": "gpu"}, "cache='gpu'"),
            ({"val_fraction": 1.5}, "val_fraction"),
            ({"composite": "nir,swir"}, "composite"),
            ({"prompt": "mask"}, "prompt"),
            ({"halo": 600}, "halo"),
            ({"unknown": 1}, "unknown finetune option"),
            # issue 21: nan, inf, zero and out-of-range values of the numeric options
            ({"lr": "nan"}, r"^lr=nan: must be a finite number > 0$"),
            ({"lr": "0"}, r"^lr=0.0: must be > 0$"),
            ({"val_fraction": "nan"}, r"^val_fraction=nan: must be a finite number >= 0 and < 1"),
            ({"weight_decay": "inf"}, r"^weight_decay=inf: must be a finite number >= 0"),
            ({"focal_alpha": "2"}, r"^focal_alpha=2.0: must be <= 1"),
            ({"focal_gamma": "-1"}, r"^focal_gamma=-1.0: must be >= 0"),
            ({"epochs": "0"}, r"^epochs=0: must be >= 1"),
            ({"workers": "-1"}, r"^workers=-1: must be >= 0"),
            ({"max_images": 2.5}, r"^option max_images=2.5: must be a whole number"),
            ({"stats_size": "0"}, r"^stats_size=0: must be >= 64"),
            ({"gsd": "inf"}, r"^gsd=inf: must be a finite number > 0"),
        ],
    )
    def test_invalid(self, values: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            FinetuneConfig().merged(values)

    def test_segment_config_shares_options(self) -> None:
        config = FinetuneConfig(bands="landsat8", composite="nir,swir,green", points=5, tile_size=256, halo=0)
        seg = config.segment_config()
        assert isinstance(seg, SegmentConfig)
        assert (seg.bands, seg.composite, seg.points, seg.tile_size) == ("landsat8", "nir,swir,green", 5, 256)

    def test_shared_options_are_declared_once(self) -> None:
        import dataclasses

        from samgeo_pipeline.config import ImageOptions, field_docs
        from samgeo_pipeline.finetune.config import SHARED_WITH_SEGMENT

        assert issubclass(FinetuneConfig, ImageOptions) and issubclass(SegmentConfig, ImageOptions)
        assert set(SHARED_WITH_SEGMENT) == {f.name for f in dataclasses.fields(ImageOptions)} - {"progress"}
        segment, finetune = SegmentConfig(), FinetuneConfig()
        assert {n for n in SHARED_WITH_SEGMENT if getattr(segment, n) != getattr(finetune, n)} == {"halo", "box_jitter"}
        docs = field_docs(FinetuneConfig)  # the help of every flag, inherited ones included
        assert set(docs) == {f.name for f in dataclasses.fields(FinetuneConfig)}
        assert docs["halo"].startswith("Context kept around each chip")
        assert docs["min_area"] == field_docs(SegmentConfig)["min_area"]

    def test_yaml(self, tmp_path: Path) -> None:
        path = tmp_path / "ft.yaml"
        path.write_text("data: chips\nepochs: 3\ncomposite: [nir, swir, green]\nbands: {red: 4, green: 3, nir: 5}\n")
        values = load_finetune_file(path)
        config = FinetuneConfig().merged(values)
        assert config.epochs == 3 and config.composite == "nir,swir,green" and config.bands == "red=4,green=3,nir=5"

    def test_differences_ignore_runtime_options(self) -> None:
        a = FinetuneConfig(workers=2, out="a")
        assert a.differences(FinetuneConfig(workers=0, out="b")) == {}
        assert set(a.differences(FinetuneConfig(lr=1.0))) == {"lr"}


class TestCommandLine:
    def test_subcommands_registered(self) -> None:
        parser = build_parser()
        args = parser.parse_args(["finetune", "--data", "d", "--epochs", "2", "--no-progress"])
        assert args.handler.__name__ == "run_finetune"
        args = parser.parse_args(["evaluate", "--model", "a", "--model", "b", "--data", "d"])
        assert args.handler.__name__ == "run_evaluate" and args.models == ["a", "b"]

    def test_flags_win_over_yaml(self, tmp_path: Path) -> None:
        path = tmp_path / "ft.yaml"
        path.write_text("data: chips\nepochs: 3\nlr: 0.01\n")
        args = build_parser().parse_args(["finetune", "--config", str(path), "--epochs", "7", "--no-progress"])
        config = finetune_config_from_args(args)
        assert (config.data, config.epochs, config.lr, config.progress) == ("chips", 7, 0.01, False)
