"""``quicklook.png`` (:mod:`samgeo_pipeline.outputs.quicklook`): the preview with the water outlined and nodata grey."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from samgeo_pipeline.outputs.quicklook import OUTLINE_RGB, draw_quicklook, write_quicklook
from samgeo_pipeline.outputs.writers import MASK_NODATA
from tests.scenes import write_raster


def scene_mask() -> np.ndarray:
    """``uint8 (40, 60)``: a 10 x 20 lake, a 10 x 20 lake with a 4 x 4 island, a nodata strip on the left."""
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 20:40] = 1
    mask[25:35, 30:50] = 1
    mask[28:32, 38:42] = 0
    mask[:, :5] = MASK_NODATA
    return mask


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_water_outlined_nodata_grey_land_as_the_preview(tmp_path: Path) -> None:
    preview = np.full((40, 60, 3), 100, np.uint8)
    out = draw_quicklook(preview, scene_mask(), tmp_path / "quicklook.png")
    rgb = png(out)
    magenta = (rgb == OUTLINE_RGB).all(axis=2)
    assert magenta[10, 20:40].all() and magenta[19, 20:40].all() and magenta[10:20, 20].all()  # the lake's edge
    assert not magenta[12:18, 22:38].any() and magenta[:22].sum() == 2 * 20 + 2 * 8  # the inside shows the image
    assert magenta[27, 38:42].all() and magenta[32, 38:42].all()  # the island's shore too
    assert (rgb[:, :5] == 48).all() and (rgb[:, 5:20] == 100).all()
    assert (preview == 100).all()  # the caller's preview is not drawn on
    assert not [p for p in tmp_path.iterdir() if p.name != "quicklook.png"]  # written atomically


def test_the_mask_is_read_at_the_previews_size(tmp_path: Path) -> None:
    """A mask twice the preview's size is read decimated (nearest): the same picture as the small one."""
    big = np.kron(scene_mask(), np.ones((2, 2), np.uint8))
    mask_path = write_raster(tmp_path / "mask.tif", big[None], nodata=MASK_NODATA)
    preview = np.full((40, 60, 3), 100, np.uint8)
    from_file = png(write_quicklook(preview, mask_path, tmp_path / "a.png"))
    resized = png(draw_quicklook(preview, big, tmp_path / "b.png"))
    direct = png(draw_quicklook(preview, scene_mask(), tmp_path / "c.png"))
    np.testing.assert_array_equal(from_file, direct)
    np.testing.assert_array_equal(resized, direct)
