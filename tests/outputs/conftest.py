"""Masks shared by the polygon tests (``test_polygon_trace.py``, ``test_vectorize.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tests.scenes import disc


@pytest.fixture
def noisy_mask() -> np.ndarray:
    """150x170 uint8 smoothed noise: 117 4-connected regions (87 8-connected), holes, nodata."""
    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.standard_normal((150, 170)), 1.2)
    mask = (field > 0).astype(np.uint8)
    mask[rng.random(mask.shape) < 0.01] = 255
    mask[:, :6] = 255
    return mask


@pytest.fixture
def lake_mask() -> np.ndarray:
    """100x100 uint8: a ring lake (outer r=30, island r=8) centred on (50, 50), a pond, nodata."""
    mask = (disc((100, 100), (50, 50), 30) & ~disc((100, 100), (50, 50), 8)).astype(np.uint8)
    mask[85:90, 5:12] = 1
    mask[:, 95:] = 255
    return mask
