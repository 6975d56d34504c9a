"""Coarse water mask: index threshold or HSV range, nodata, small components removed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from samgeo_pipeline.coarse import coarse_water_mask
from samgeo_pipeline.radiometry import ImageStats

HSV = ((85, 40, 20), (130, 255, 200))


def stats(index: str = "ndwi", threshold: float | None = 0.0) -> ImageStats:
    return ImageStats(
        band_names=("green", "nir"),
        low=(0.0, 0.0),
        high=(255.0, 255.0),
        index=index,  # type: ignore[arg-type]
        threshold=threshold,
        valid_fraction=1.0,
        composite=("green", "nir", "green"),
    )


def bands_of(water: np.ndarray) -> np.ndarray:
    """``float32 (2, rows, cols)`` green, NIR: NDWI +0.5 on water, -0.5 elsewhere."""
    green = np.where(water, 90.0, 30.0)
    nir = np.where(water, 30.0, 90.0)
    return np.stack([green, nir]).astype(np.float32)


def mask(water: np.ndarray, valid: np.ndarray | None = None, min_area: int = 1, **kw: object) -> np.ndarray:
    valid = np.ones(water.shape, bool) if valid is None else valid
    rgb = np.zeros((*water.shape, 3), np.uint8)
    return coarse_water_mask(bands_of(water), valid, rgb, kw.get("st", stats()), min_area, *HSV)  # type: ignore[arg-type]


class TestIndex:
    def test_threshold(self) -> None:
        water = np.zeros((20, 20), bool)
        water[5:15, 5:15] = True
        result = mask(water)
        assert result.dtype == bool and result.shape == (20, 20)
        np.testing.assert_array_equal(result, water)

    def test_strictly_above_threshold(self) -> None:
        water = np.zeros((10, 10), bool)
        water[2:8, 2:8] = True
        assert not mask(water, st=stats(threshold=0.5)).any()  # index == 0.5 is not > 0.5
        assert mask(water, st=stats(threshold=0.49)).sum() == 36

    def test_invalid_pixels_are_never_water(self) -> None:
        water = np.ones((10, 10), bool)
        valid = np.ones((10, 10), bool)
        valid[:, :3] = False
        result = mask(water, valid)
        assert not result[:, :3].any() and result[:, 3:].all()


class TestMinArea:
    def test_small_components_dropped(self) -> None:
        water = np.zeros((40, 40), bool)
        water[2:5, 2:5] = True  # 9 px
        water[20:30, 20:30] = True  # 100 px
        water[10, 30] = True  # 1 px
        result = mask(water, min_area=10)
        labels, count = ndimage.label(result)
        assert count == 1 and result.sum() == 100
        assert mask(water, min_area=9).sum() == 109  # exactly min_area is kept

    def test_eight_connectivity(self) -> None:
        water = np.zeros((20, 20), bool)
        idx = np.arange(10)
        water[idx, idx] = True  # a diagonal line: one 8-connected component of 10 px
        assert mask(water, min_area=10).sum() == 10

    def test_min_area_one_keeps_everything(self) -> None:
        water = np.zeros((10, 10), bool)
        water[3, 3] = True
        assert mask(water, min_area=1).sum() == 1


class TestHsv:
    def test_blue_is_water(self) -> None:
        rgb = np.zeros((4, 4, 3), np.uint8)
        rgb[:2] = (20, 60, 120)  # blue water: H ~ 108 (OpenCV), S 212, V 120
        rgb[2:] = (60, 120, 30)  # green vegetation: H ~ 50
        result = coarse_water_mask(
            np.zeros((2, 4, 4), np.float32), np.ones((4, 4), bool), rgb, stats("hsv", None), 1, *HSV
        )
        assert result[:2].all() and not result[2:].any()

    @pytest.mark.parametrize(
        "colour",
        [(200, 200, 210), (250, 250, 255), (5, 5, 10), (200, 60, 40)],
        ids=["grey-cloud", "white", "black", "red-roof"],
    )
    def test_not_water(self, colour: tuple[int, int, int]) -> None:
        rgb = np.zeros((2, 2, 3), np.uint8)
        rgb[:] = colour
        result = coarse_water_mask(
            np.zeros((2, 2, 2), np.float32), np.ones((2, 2), bool), rgb, stats("hsv", None), 1, *HSV
        )
        assert not result.any()


def test_independent_of_window_when_min_area_le_halo_plus_one() -> None:
    """The module's claim: cutting a core out of a window with a halo >= min_area - 1 gives the
    same result as the whole image, whatever the components look like."""
    rng = np.random.default_rng(3)
    water = ndimage.binary_opening(rng.random((120, 120)) < 0.45)
    min_area, halo, core = 12, 11, 30
    whole = mask(water, min_area=min_area)
    for r0 in range(0, 120, core):
        for c0 in range(0, 120, core):
            ra, ca = max(0, r0 - halo), max(0, c0 - halo)
            window = mask(water[ra : r0 + core + halo, ca : c0 + core + halo], min_area=min_area)
            np.testing.assert_array_equal(
                window[r0 - ra : r0 - ra + core, c0 - ca : c0 - ca + core], whole[r0 : r0 + core, c0 : c0 + core]
            )


def test_drop_small_components_matches_skimage():
    from skimage.morphology import remove_small_objects

    from samgeo_pipeline.coarse import drop_small_components

    rng = np.random.default_rng(3)
    mask = rng.random((300, 400)) < 0.3
    for min_area in (2, 5, 64):
        expected = remove_small_objects(mask, max_size=min_area - 1, connectivity=2)
        np.testing.assert_array_equal(drop_small_components(mask.copy(), min_area), expected)
