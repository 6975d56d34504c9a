"""Small labelled datasets written by the fine-tuning tests: chip folders, HF datasets, orthoimages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.transform import from_origin

from samgeo_pipeline.demo import write_geotiff

#: Real Cellula chips, beside the project (absent in a fresh clone: tests skip).
CELLULA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cellula_water"


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """``bool`` disc of ``radius`` pixels around ``centre`` (row, col)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2


def rgbn(water: np.ndarray, seed: int = 0) -> np.ndarray:
    """``uint8 (4, rows, cols)`` R, G, B, NIR: water dark-blue with low NIR, land green with high NIR."""
    rng = np.random.default_rng(seed)
    land, wet = (95, 110, 80, 170), (50, 70, 110, 25)
    bands = np.stack([np.where(water, w, g) for g, w in zip(land, wet, strict=True)]).astype(np.float32)
    return np.clip(bands + rng.normal(0, 5, bands.shape), 1, 255).astype(np.uint8)


def chip_water(index: int, size: int = 64) -> np.ndarray:
    """Known water of synthetic chip ``index`` (a disc, none for every fifth chip)."""
    if index % 5 == 4:
        return np.zeros((size, size), bool)
    return disc((size, size), (size * (0.3 + 0.08 * (index % 4)), size * 0.5), size * (0.18 + 0.02 * (index % 3)))


def write_chip_folder(root: Path, n: int = 6, size: int = 64) -> Path:
    """``root/images/i.tif`` (4-band uint8, no georeferencing) and ``root/labels/i.png`` (0/1)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        water = chip_water(i, size)
        write_geotiff(root / "images" / f"{i}.tif", rgbn(water, i), crs=None, nodata=None)
        Image.fromarray(water.astype(np.uint8)).save(root / "labels" / f"{i}.png")
    return root


def hf_rows(n: int, size: int = 64, offset: int = 0) -> dict[str, list]:
    """Columns ``image`` (PIL RGB), ``label`` (PIL L, 0/1) and ``name`` of ``n`` synthetic samples."""
    images, labels, names = [], [], []
    for i in range(offset, offset + n):
        water = chip_water(i, size)
        images.append(Image.fromarray(np.moveaxis(rgbn(water, i)[:3], 0, -1)))
        labels.append(Image.fromarray(water.astype(np.uint8)))
        names.append(f"img_{i:03d}")
    return {"image": images, "label": labels, "name": names}


def write_hf_dataset(path: Path, n_train: int = 6, n_val: int = 3) -> Path:
    """A ``DatasetDict`` with ``train`` and ``validation`` splits (Elwha schema), saved to disk."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image(), "name": datasets.Value("string")})
    splits = {
        "train": datasets.Dataset.from_dict(hf_rows(n_train), features=features),
        "validation": datasets.Dataset.from_dict(hf_rows(n_val, offset=100), features=features),
    }
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


ORTHO_SHAPE = (256, 320)
ORTHO_TRANSFORM = from_origin(500000.0, 5600000.0, 2.0, 2.0)


def ortho_water() -> np.ndarray:
    """Known water of the synthetic orthoimage: two lakes, ``bool ORTHO_SHAPE``."""
    return disc(ORTHO_SHAPE, (80, 90), 40) | disc(ORTHO_SHAPE, (180, 240), 50)


def write_ortho(path: Path) -> Path:
    """A 4-band uint8 orthoimage in UTM 33N (EPSG:32633), 2 m pixels, with :func:`ortho_water`."""
    return write_geotiff(path, rgbn(ortho_water()), transform=ORTHO_TRANSFORM, nodata=None)


def write_label_polygons(path: Path, crs: str = "EPSG:4326") -> Path:
    """The lakes of :func:`ortho_water` as polygons in ``crs`` (GeoPackage)."""
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape

    geoms = [shape(g) for g, v in shapes(ortho_water().astype(np.uint8), transform=ORTHO_TRANSFORM) if v == 1]
    gpd.GeoDataFrame({"kind": ["lake"] * len(geoms)}, geometry=geoms, crs="EPSG:32633").to_crs(crs).to_file(path)
    return path


def write_label_raster(path: Path, crs: str = "EPSG:32633", transform=ORTHO_TRANSFORM) -> Path:
    """:func:`ortho_water` as a uint8 raster (nodata 255) reprojected to ``crs`` when asked."""
    from rasterio.warp import calculate_default_transform, reproject

    water = ortho_water().astype(np.uint8)
    height, width = ORTHO_SHAPE
    if crs != "EPSG:32633":
        left, top = ORTHO_TRANSFORM * (0, 0)
        right, bottom = ORTHO_TRANSFORM * (width, height)
        transform, width, height = calculate_default_transform("EPSG:32633", crs, width, height, left, bottom, right, top)
        out = np.full((height, width), 255, np.uint8)
        reproject(water, out, src_transform=ORTHO_TRANSFORM, src_crs="EPSG:32633", dst_transform=transform,
                  dst_crs=crs, dst_nodata=255)  # fmt: skip
        water = out
    return write_geotiff(path, water[None], crs=crs, transform=transform, nodata=255)
