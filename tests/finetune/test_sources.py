"""Labelled samples from HF datasets, chip folders and orthoimages with labels in another CRS."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.ortho import OrthoSource
from samgeo_pipeline.finetune.sources import (
    ChipFolderSource,
    HFDatasetSource,
    open_datasets,
    open_source,
    split_by_name,
)
from samgeo_pipeline.io.tiling import inside_part
from tests.finetune_data import (
    CELLULA,
    ORTHO_SHAPE,
    chip_water,
    ortho_water,
    write_chip_folder,
    write_hf_dataset,
    write_label_polygons,
    write_label_raster,
    write_ortho,
)


def check_sample(sample, shape: tuple[int, int]) -> None:
    assert sample.rgb.shape == (*shape, 3) and sample.rgb.dtype == np.uint8
    for mask in (sample.label, sample.valid, sample.coarse):
        assert mask.shape == shape and mask.dtype == bool


class TestHFDataset:
    def test_save_to_disk_splits(self, tmp_path: Path) -> None:
        path = write_hf_dataset(tmp_path / "ds", n_train=4, n_val=2)
        train, val = open_datasets(FinetuneConfig(data=str(path)))
        assert isinstance(train, HFDatasetSource) and len(train) == 4 and val is not None and len(val) == 2
        assert train.names[0] == "img_000" and train.composite == ("red", "green", "blue")
        sample = train.load(1)
        check_sample(sample, (64, 64))
        np.testing.assert_array_equal(sample.label, chip_water(1))

    def test_single_dataset_split_by_fraction(self, tmp_path: Path) -> None:
        import datasets

        from tests.finetune_data import hf_rows

        datasets.Dataset.from_dict(hf_rows(10)).save_to_disk(str(tmp_path / "one"))
        train, val = open_datasets(FinetuneConfig(data=str(tmp_path / "one"), val_fraction=0.3))
        assert val is not None and len(train) + len(val) == 10 and set(train.names).isdisjoint(val.names)

    def test_missing_column(self, tmp_path: Path) -> None:
        path = write_hf_dataset(tmp_path / "ds", 2, 1)
        with pytest.raises(InputError, match="no column 'mask'"):
            open_source(str(path), FinetuneConfig(label_column="mask"))


class TestChipFolder:
    def test_pairs_and_labels(self, tmp_path: Path) -> None:
        root = write_chip_folder(tmp_path / "chips", n=5)
        source = open_source(str(root), FinetuneConfig(bands="naip"))
        assert isinstance(source, ChipFolderSource) and source.names == ["0", "1", "2", "3", "4"]
        sample = source.load(4)  # the chip without water
        check_sample(sample, (64, 64))
        assert not sample.label.any()
        np.testing.assert_array_equal(source.load(2).label, chip_water(2))

    def test_label_ignore(self, tmp_path: Path) -> None:
        root = write_chip_folder(tmp_path / "chips", n=2)
        from PIL import Image

        raw = chip_water(0).astype(np.uint8)
        raw[:10] = 255
        Image.fromarray(raw).save(root / "labels" / "0.png")
        sample = open_source(str(root), FinetuneConfig(bands="naip", label_ignore=255)).load(0)
        assert not sample.valid[:10].any() and sample.valid[10:].all()

    @pytest.mark.skipif(not CELLULA.is_dir(), reason="../shared/data/cellula_water absent")
    def test_cellula_uses_bands_1_to_7_only(self) -> None:
        source = open_source(str(CELLULA), FinetuneConfig(bands="landsat8", composite="nir,swir,green"))
        assert len(source) == 150 and source.composite == ("nir", "swir", "green")
        from samgeo_pipeline.io.raster import inspect_raster

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = inspect_raster(CELLULA / "images" / "0.tif", "landsat8")
        assert max(info.band_indexes) <= 7
        check_sample(source.load(0), (128, 128))

    def test_not_a_source(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(InputError, match="neither a chip folder"):
            open_source(str(tmp_path / "empty"), FinetuneConfig())


class TestOrtho:
    def test_polygons_in_another_crs(self, tmp_path: Path) -> None:
        image = write_ortho(tmp_path / "ortho.tif")
        labels = write_label_polygons(tmp_path / "lakes.gpkg", crs="EPSG:4326")
        source = OrthoSource(image, labels, FinetuneConfig(tile_size=128, halo=0))
        assert len(source) == 2 * 3 and source.names[0] == "ortho_r000_c000"
        truth = ortho_water()
        for i, tile in enumerate(source.tiles):
            sample = source.load(i)
            check_sample(sample, (128, 128))
            window, (rows, cols) = inside_part(tile, *ORTHO_SHAPE)  # the tile's part inside the image
            expected = np.zeros((128, 128), bool)
            expected[rows, cols] = truth[window.toslices()]
            disagree = (sample.label != expected) & sample.valid
            assert disagree.sum() <= 0.02 * max(1, expected.sum()) + 8  # boundary pixels after reprojection
            outside = np.ones((128, 128), bool)
            outside[rows, cols] = False
            assert not sample.valid[outside].any()  # beyond the image: invalid

    @pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:3857"])
    def test_label_raster(self, tmp_path: Path, crs: str) -> None:
        image = write_ortho(tmp_path / "ortho.tif")
        labels = write_label_raster(tmp_path / "labels.tif", crs=crs)
        source = open_source(str(image), FinetuneConfig(tile_size=128, halo=0), labels=str(labels))
        assert isinstance(source, OrthoSource) and ("warped" in source.description) == (crs != "EPSG:32633")
        sample = source.load(0)
        expected = ortho_water()[:128, :128]
        assert ((sample.label != expected) & sample.valid).sum() <= 0.05 * expected.sum() + 8

    def test_ortho_needs_labels(self, tmp_path: Path) -> None:
        image = write_ortho(tmp_path / "ortho.tif")
        with pytest.raises(InputError, match="needs labels"):
            open_source(str(image), FinetuneConfig())


def test_split_by_name_is_stable() -> None:
    names = [f"n{i}" for i in range(50)]
    train, val = split_by_name(names, 0.2, seed=0)
    assert sorted(train + val) == list(range(50)) and 3 <= len(val) <= 20
    # Adding samples does not move existing ones between splits.
    train2, val2 = split_by_name(names + ["extra1", "extra2"], 0.2, seed=0)
    assert set(val) == set(val2) - {50, 51}
    assert split_by_name(["a", "b"], 0.01, 0)[1]  # at least one validation sample
