"""Shared fixtures: the demo scene in a projected and a geographic CRS, and one run of each.

Session-scoped outputs are shared between tests: read them, never modify them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samgeo_pipeline.demo import demo_nodata, demo_water, write_demo_scene
from samgeo_pipeline.run.image import SegmentResult
from tests.scenes import DEMO_SHAPE, GEO_TRANSFORM, run


@pytest.fixture(scope="session")
def demo_truth() -> tuple[np.ndarray, np.ndarray]:
    """``(water, nodata)`` of the demo scene at :data:`DEMO_SHAPE`, both ``bool (rows, cols)``."""
    return demo_water(*DEMO_SHAPE), demo_nodata(*DEMO_SHAPE)


@pytest.fixture(scope="session")
def demo_utm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scene (river, three lakes, nodata margin) in UTM 33N, 2 m pixels."""
    return write_demo_scene(tmp_path_factory.mktemp("demo") / "demo_utm.tif", *DEMO_SHAPE)


@pytest.fixture(scope="session")
def demo_geo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scene in EPSG:4326, 1e-4 degree pixels near the equator."""
    path = tmp_path_factory.mktemp("demo") / "demo_geo.tif"
    return write_demo_scene(path, *DEMO_SHAPE, crs="EPSG:4326", transform=GEO_TRANSFORM)


@pytest.fixture(scope="session")
def demo_utm_run(demo_utm: Path, tmp_path_factory: pytest.TempPathFactory) -> SegmentResult:
    """One ``--model none`` run of :func:`demo_utm` with small tiles (shared; do not modify)."""
    out = tmp_path_factory.mktemp("run") / "demo_utm"
    return run(demo_utm, out, tile_size=256, halo=64, probability=True)


@pytest.fixture(scope="session")
def demo_geo_run(demo_geo: Path, tmp_path_factory: pytest.TempPathFactory) -> SegmentResult:
    """One ``--model none`` run of :func:`demo_geo` with small tiles (shared; do not modify)."""
    out = tmp_path_factory.mktemp("run") / "demo_geo"
    return run(demo_geo, out, tile_size=256, halo=64)
