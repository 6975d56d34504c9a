"""One image's statistics stage: the decimated read of the whole image, the statistics and coarse
rule fitted on it (:func:`~samgeo_pipeline.water.radiometry.stats_from_array`), the quicklook's
preview, the zero collar, and whether the run abstains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from samgeo_pipeline.errors import RasterReadError
from samgeo_pipeline.io.raster import RasterInfo, decimated_shape, read_decimated
from samgeo_pipeline.io.reflectance import resolve_reflectance
from samgeo_pipeline.io.zero_collar import with_zero_collar
from samgeo_pipeline.outputs.quicklook import preview_rgb
from samgeo_pipeline.outputs.writers import MASK_NODATA
from samgeo_pipeline.run.prepare import ReaderOptions, read_workers
from samgeo_pipeline.water.coarse import apply_rule
from samgeo_pipeline.water.radiometry import ImageStats, StatsOptions, source_dtype, stats_from_array


class AbstainOptions(Protocol):
    """The options :func:`abstains` reads; :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    # Read-only properties: the configs are frozen dataclasses, and a property lets ``on_uncertain``
    # and ``prompt`` be their narrower ``Literal``.
    @property
    def on_uncertain(self) -> str: ...
    @property
    def prompt(self) -> str: ...


class ImageStatsOptions(StatsOptions, ReaderOptions, AbstainOptions, Protocol):
    """The options :func:`image_stats` reads (and what it calls); :class:`~samgeo_pipeline.config.SegmentConfig` satisfies it."""

    @property
    def zero_collar(self) -> bool: ...


def image_stats(
    path: Path, info: RasterInfo, config: ImageStatsOptions
) -> tuple[ImageStats, np.ndarray, np.ndarray | None, RasterInfo, float]:
    """Whole-image statistics, the quicklook's preview and, when the run abstains, the rule's
    candidate water (``uint8``, as the mask COG), from one decimated read.

    The same read finds a collar of zeros the file does not tag as nodata
    (:func:`~samgeo_pipeline.io.zero_collar.with_zero_collar`, unless ``config.zero_collar`` is off).

    Returns:
        ``(stats, preview, info, share)``: ``info`` is the run's from now on (``nodata`` 0 when a
        collar was found); ``share``: the share of the image border that is 0 in every mapped band.

    Raises:
        RasterReadError: the raster cannot be read.
    """
    try:
        with rasterio.open(path) as ds:
            shape = decimated_shape(info.height, info.width, config.stats_size)
            data, valid = read_decimated(ds, info, shape, Resampling.nearest, workers=read_workers(config))
            dtype = source_dtype(ds, info)
            reflectance = resolve_reflectance(ds, info, config.reflectance_scale, config.reflectance_offset, config.bands)
        share = 0.0
        if config.zero_collar:
            info, valid, share = with_zero_collar(info, data, valid)
        stats = stats_from_array(data, valid, tuple(info.band_names), config, str(path), dtype, reflectance)
        candidate = _candidate_water(data, valid, stats, config) if abstains(stats, config) else None
        return stats, preview_rgb(data, valid, stats), candidate, info, share
    except RasterioError as exc:
        raise RasterReadError(f"{path}: read failed while computing statistics ({exc})") from None


def abstains(stats: ImageStats, config: AbstainOptions) -> bool:
    """Whether a run skips the tiles of this image: its rule is uncertain and ``on_uncertain`` is ``skip``
    (never with ``--prompt text``: SAM 3's text needs no coarse mask)."""
    return stats.coarse.uncertain is not None and config.on_uncertain == "skip" and config.prompt != "text"


def _candidate_water(data: np.ndarray, valid: np.ndarray, stats: ImageStats, config: ImageStatsOptions) -> np.ndarray:
    """The rule's water on the decimated read as the mask COG codes it (1 water, 0 land, nodata)."""
    water = apply_rule(data, valid, stats.coarse, config.min_area, pools=False).water
    return np.where(valid, water, MASK_NODATA).astype(np.uint8)
