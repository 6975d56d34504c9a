"""Helpers for the tests: tiny seeded rasters with known water, and small checks on outputs.

Scenes are small (a few hundred pixels a side) so the suite stays fast; the truth of every scene is
known exactly, so outputs are checked against it, not against a previous run.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferencedWarning
from rasterio.transform import Affine

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.demo import LAND_RGBN, WATER_RGBN, write_geotiff
from samgeo_pipeline.run.image import SegmentResult, segment_raster

#: Real imagery, outside the repository (``../shared/data`` from the project root).
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Demo scene size: above the COG's 512-pixel block, so the mask gets an overview level.
DEMO_SHAPE = (600, 800)
UTM_TRANSFORM = Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 5600000.0)
#: ~11 m pixels just north of the equator.
GEO_TRANSFORM = Affine(1e-4, 0.0, 30.0, 0.0, -1e-4, 0.05)

#: Metres per degree at the equator (WGS 84): along the equator and along a meridian.
M_PER_DEG_LON, M_PER_DEG_LAT = 111_319.49, 110_574.27


def options_only(config: SegmentConfig, protocol: type) -> SimpleNamespace:
    """``config``'s values of the options ``protocol`` (a stage's options ``Protocol``) lists, and no
    other option: a stage handed it fails with ``AttributeError`` on reading an option it does not declare."""
    names = {name for klass in protocol.__mro__ for name, value in vars(klass).items() if isinstance(value, property)}
    return SimpleNamespace(**{name: getattr(config, name) for name in names})


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | CRS | None = "EPSG:32633",
    transform: Affine | None = UTM_TRANSFORM,
    nodata: float | None = 0,
    **profile: object,
) -> Path:
    """Write ``data`` (``(bands, rows, cols)``) as a tiled (128²), deflate GeoTIFF; ``crs=None`` writes
    none (:func:`samgeo_pipeline.demo.write_geotiff` with the tests' defaults)."""
    return write_geotiff(path, data, crs=crs, transform=transform, nodata=nodata, block_size=128, **profile)


def rgbn_scene(
    water: np.ndarray, nodata: np.ndarray | None = None, seed: int = 0, noise: float = 5.0
) -> np.ndarray:
    """A uint8 R, G, B, NIR image of ``water`` (``bool (rows, cols)``); 0 on ``nodata``.

    Each band has its own seeded noise, so the index is noisy but far from the threshold.
    """
    rng = np.random.default_rng(seed)
    height, width = water.shape
    bands = np.empty((4, height, width), np.float32)
    for b in range(4):
        bands[b] = np.where(water, WATER_RGBN[b], LAND_RGBN[b]) + rng.normal(0, noise, (height, width))
    image = np.clip(bands, 1, 255).astype(np.uint8)
    if nodata is not None:
        image[:, nodata] = 0
    return image


def multiband_scene(
    water: np.ndarray, count: int, bands: dict[str, int], seed: int = 0, dtype: str = "uint16"
) -> np.ndarray:
    """A ``count``-band image where the named 1-based ``bands`` carry land/water signatures.

    Unnamed bands hold noise; water is dark in NIR and SWIR and bright in green.
    """
    rng = np.random.default_rng(seed)
    signature = {  # land, water (DN)
        "red": (900, 500),
        "green": (1000, 1400),
        "blue": (700, 1100),
        "nir": (2600, 300),
        "swir": (2000, 150),
        "swir2": (1500, 100),
    }
    height, width = water.shape
    image = rng.integers(800, 1200, (count, height, width)).astype(np.float32)
    for name, index in bands.items():
        land, wet = signature[name]
        image[index - 1] = np.where(water, wet, land) + rng.normal(0, 40, (height, width))
    return np.clip(image, 1, None).astype(dtype)


def disc(shape: tuple[int, int], centre_rc: tuple[float, float], radius: float) -> np.ndarray:
    """``bool shape``: pixels whose centre lies within ``radius`` of ``centre_rc`` (row, col)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows + 0.5 - centre_rc[0]) ** 2 + (cols + 0.5 - centre_rc[1]) ** 2 < radius**2


def run(path: Path, out_dir: Path, config: SegmentConfig | None = None, **options: object) -> SegmentResult:
    """``segment_raster`` with ``--model none`` and no progress bar, plus ``options``."""
    config = (config or SegmentConfig(model="none", progress=False)).merged(options)
    return segment_raster(path, out_dir, config)


def read_mask(out_dir: Path) -> np.ndarray:
    """``uint8 (rows, cols)`` of ``out_dir/mask.tif``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
        with rasterio.open(out_dir / "mask.tif") as ds:
            return ds.read(1)


def check_mask_on_input_grid(source: Path, out_dir: Path) -> None:
    """Assert that ``out_dir/mask.tif`` has the CRS, transform and shape of ``source``, 255 where the
    source has no data and only 0 / 1 elsewhere."""
    with rasterio.open(source) as src, rasterio.open(out_dir / "mask.tif") as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        mask, nodata = out.read(1), src.read_masks(1) == 0
    assert np.all(mask[nodata] == 255) and set(np.unique(mask[~nodata])) <= {0, 1}


def leftovers(root: Path) -> Sequence[Path]:
    """Temporary files (``.partial`` / ``.work``) left anywhere under ``root``."""
    return [p for p in root.rglob("*") if ".partial-" in p.name or ".work-" in p.name]


def inputs_inside_outputs(root: Path, scene: Path, first: str = "mask") -> list[Path]:
    """Issue 21's layout: copies of ``scene`` at ``root/FIRST/mask.tif``, ``root/probability/probability.tif``
    and ``root/scene/scene.tif``, with a user's own ``manifest.json`` and ``quicklook.png`` beside
    the last; ``root`` is then given as the output folder."""
    inputs = [root / first / "mask.tif", root / "probability" / "probability.tif", root / "scene" / "scene.tif"]
    for path in inputs:
        path.parent.mkdir(parents=True)
        shutil.copy(scene, path)
    (root / "scene" / "manifest.json").write_text('{"my": "notes"}')
    (root / "scene" / "quicklook.png").write_bytes(b"my picture")
    return inputs
