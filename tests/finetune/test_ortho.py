"""Tiles of one orthoimage with their labels (:mod:`samgeo_pipeline.finetune.ortho`): refusals, unknown labels.
Polygons in another CRS and warped label rasters are in ``tests/finetune/test_sources.py::TestOrtho``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.ortho import OrthoSource
from tests.finetune_data import ortho_water, rgbn, write_label_polygons, write_ortho

CONFIG = FinetuneConfig(tile_size=128, halo=0)


def write_plain(path: Path, array: np.ndarray, nodata: int | None = None) -> Path:
    """A raster without CRS or geotransform."""
    bands = array if array.ndim == 3 else array[None]
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=len(bands),
                       dtype="uint8", nodata=nodata) as dst:  # fmt: skip
        dst.write(bands)
    return path


def test_labels_an_image_without_georeferencing_cannot_take(tmp_path: Path) -> None:
    image = write_plain(tmp_path / "plain.tif", rgbn(ortho_water()))
    with pytest.raises(InputError, match=r"plain\.tif: label polygons need a georeferenced image"):
        OrthoSource(image, write_label_polygons(tmp_path / "lakes.gpkg"), CONFIG)
    small = write_plain(tmp_path / "small.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match=r"small\.tif: without georeferencing the label raster must match the image's 256x320"):
        OrthoSource(image, small, CONFIG)
    with pytest.raises(InputError, match=r"missing\.tif: no such label file"):
        OrthoSource(write_ortho(tmp_path / "ortho.tif"), tmp_path / "missing.tif", CONFIG)


def test_ignored_and_nodata_labels_are_unknown(tmp_path: Path) -> None:
    """A same-size label raster without georeferencing: read pixel for pixel; 255 (nodata) and the ignore value unknown."""
    image = write_plain(tmp_path / "plain.tif", rgbn(ortho_water()))
    label = ortho_water().astype(np.uint8)
    label[:, :20] = 255  # nodata
    label[:20, :] = 9  # the ignore value
    source = OrthoSource(image, write_plain(tmp_path / "label.tif", label, nodata=255), CONFIG.merged({"label_ignore": 9}))
    assert source.same_grid and len(source) == 2 * 3
    sample = source.load(0)
    assert not sample.valid[:, :20].any() and not sample.valid[:20].any() and sample.valid[20:, 20:].all()
    np.testing.assert_array_equal(sample.label[20:, 20:], ortho_water()[20:128, 20:128])
