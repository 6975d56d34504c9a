"""Training chips cut from an orthoimage by the segment pipeline's tiler, with labels on the same grid.

Labels are a raster (water > 0; its nodata/mask = unknown) or polygons (GeoPackage or any vector
file, every polygon water). Either is brought onto the image's pixel grid: a raster in another CRS
or grid through a nearest-neighbour ``WarpedVRT``, polygons reprojected to the image CRS and
rasterised tile by tile. The image's statistics are computed once for the whole image, as the
segment pipeline does, so a chip looks to SAM exactly like the same tile at inference.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from samgeo_pipeline.errors import InputError, SamgeoPipelineWarning, ignore_rasterio_georeference_warnings
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.sample_types import Sample, SampleSource, label_masks, make_sample
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import Tile, inside_part, make_grid, read_tile
from samgeo_pipeline.water.radiometry import compute_stats, resolve_composite

ignore_rasterio_georeference_warnings()

VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml", ".parquet")


class OrthoSource(SampleSource):
    """Tiles of one orthoimage with their labels; a tile is named ``STEM_rROW_cCOL``.

    Args:
        image: the orthoimage (any raster the segment pipeline reads).
        labels: label raster, or vector file of water polygons.
        config: band mapping, radiometry, and tiling (``tile_size``, ``halo``, ``gsd``).

    Raises:
        InputError: polygons for an image without georeferencing, or a label raster that cannot be
            placed on the image's grid.
    """

    def __init__(self, image: Path, labels: Path, config: FinetuneConfig) -> None:
        self.config = config
        self.seg = config.segment_config()
        self.info = inspect_raster(image, config.bands, config.nodata)
        with rasterio.open(image) as ds:
            self.stats = compute_stats(ds, self.info, self.seg)
        self.tiles: list[Tile] = list(make_grid(self.info, self.seg))
        self.names = [f"{image.stem}_r{t.row:03d}_c{t.col:03d}" for t in self.tiles]
        self.band_names = tuple(self.info.band_names)
        self.composite = resolve_composite(config.composite, self.band_names, str(image))
        if not labels.exists():
            raise InputError(f"{labels}: no such label file")
        self.labels = labels
        self.vector = labels.suffix.lower() in VECTOR_SUFFIXES
        self._geometries: Any = None
        self.same_grid = True
        if self.vector:
            if not self.info.georeferenced:
                raise InputError(f"{image}: label polygons need a georeferenced image (it has no CRS/geotransform)")
            self._geometries = _load_polygons(labels, self.info.crs)
            how = "polygons"
        else:
            self.same_grid = self._same_grid()
            how = "label raster" + ("" if self.same_grid else ", warped to the image grid")
        self.description = f"orthoimage {image} with {how} {labels} ({len(self.tiles)} tiles)"

    def _same_grid(self) -> bool:
        with rasterio.open(self.labels) as src:
            same_shape = (src.height, src.width) == (self.info.height, self.info.width)
            if not self.info.georeferenced or src.crs is None:
                if not same_shape:
                    raise InputError(
                        f"{self.labels}: without georeferencing the label raster must match the image's "
                        f"{self.info.height}x{self.info.width} pixels (it has {src.height}x{src.width})"
                    )
                return True
            return same_shape and src.crs == self.info.crs and src.transform.almost_equals(self.info.transform)

    def load(self, index: int) -> Sample:
        tile = self.tiles[index]
        with rasterio.open(self.info.path) as ds:
            data, valid = read_tile(ds, self.info, tile)
        if self.vector:
            water, known = self._rasterize(tile), np.ones(valid.shape, bool)
        else:
            water, known = self._read_label(tile)
        return make_sample(self.names[index], data, valid & known, water, self.band_names, self.seg, self.stats)

    def _read_label(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """``(water, known)`` of a tile from the label raster, ``bool (tile_size, tile_size)`` each."""
        with rasterio.open(self.labels) as src:
            if self.same_grid:
                return _read_label_tile(src, tile, self.info.height, self.info.width, self.config.label_ignore)
            from rasterio.vrt import WarpedVRT

            with WarpedVRT(
                src,
                crs=self.info.crs,
                transform=self.info.transform,
                width=self.info.width,
                height=self.info.height,
                resampling=Resampling.nearest,
            ) as vrt:
                return _read_label_tile(vrt, tile, self.info.height, self.info.width, self.config.label_ignore)

    def _rasterize(self, tile: Tile) -> np.ndarray:
        """Water polygons burnt into a tile: ``bool (tile_size, tile_size)``."""
        from rasterio.features import rasterize
        from shapely.geometry import box

        g = tile.grid
        transform = tile.working_transform(self.info.transform)
        x0, y0 = transform * (0, 0)
        x1, y1 = transform * (g.tile_size, g.tile_size)
        geometries, tree = self._geometries
        hits = tree.query(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        if len(hits) == 0:
            return np.zeros((g.tile_size, g.tile_size), bool)
        burnt = rasterize(
            ((geometries[i], 1) for i in hits), out_shape=(g.tile_size, g.tile_size), transform=transform, fill=0, dtype="uint8"
        )
        inside: np.ndarray = burnt > 0
        return inside


def _load_polygons(path: Path, crs: Any) -> tuple[Any, Any]:
    """Polygons of ``path`` in ``crs`` and an STRtree over them.

    A file without a CRS is taken to be in the image's CRS (with a warning).
    """
    import geopandas as gpd
    from shapely import STRtree


    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # noqa: BLE001 - pyogrio/fiona raise many types
        raise InputError(f"{path}: cannot read label polygons ({exc})") from None
    if frame.crs is None:
        warnings.warn(f"{path}: label polygons have no CRS; assuming the image's ({crs})", SamgeoPipelineWarning, stacklevel=3)
    elif not frame.crs.equals(crs):
        frame = frame.to_crs(crs)
    geometries = np.array([geom for geom in frame.geometry if geom is not None and not geom.is_empty], dtype=object)
    return geometries, STRtree(geometries)


def _read_label_tile(
    src: Any, tile: Tile, height: int, width: int, ignore: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Label values of a tile read the way :func:`~samgeo_pipeline.io.tiling.read_tile` reads images.

    Nearest-neighbour resampling to working pixels; outside the raster or where the label raster
    is masked (nodata, outside a warped extent) the label is unknown.

    Returns:
        ``(water, known)``: ``bool (tile_size, tile_size)`` each.
    """
    size = tile.grid.tile_size
    water = np.zeros((size, size), bool)
    known = np.zeros((size, size), bool)
    window, (rows, cols) = inside_part(tile, height, width)
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    raw = src.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
    mask = src.read_masks(1, window=window, out_shape=shape, resampling=Resampling.nearest) > 0
    part_water, part_known = label_masks(raw, ignore)
    water[rows, cols] = part_water & mask
    known[rows, cols] = part_known & mask
    return water, known


__all__ = ["OrthoSource", "VECTOR_SUFFIXES"]
