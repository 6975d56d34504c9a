"""Whole-image, nodata-aware radiometry: one normalisation and one coarse-mask rule per image.

Statistics come from a decimated read (longest side ``stats_size``), so every tile of an image is
normalised the same way (no per-tile stretch, no seams) and the coarse mask's rule
(:mod:`samgeo_pipeline.coarse`) is fixed for the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling

from samgeo_pipeline.coarse import FLOOR_PERCENTILE, CoarseRule, fit_rule
from samgeo_pipeline.config import SegmentConfig, parse_composite
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.raster import RasterInfo, decimated_shape, read_decimated

#: Composites tried in order for SAM's three channels: true colour, then false colours.
COMPOSITES: tuple[tuple[str, str, str], ...] = (
    ("red", "green", "blue"),
    ("swir", "nir", "red"),
    ("nir", "red", "green"),
    ("swir", "nir", "green"),
)


@dataclass(frozen=True)
class ImageStats:
    """Per-image statistics that fix normalisation and thresholds for every tile.

    Attributes:
        band_names: mapped band names, the order of ``low`` and ``high``.
        low, high: per-band values mapped to 0 and 1 (the configured percentiles).
        coarse: the coarse-mask rule fitted on this image (method, thresholds, separability).
        valid_fraction: fraction of valid pixels in the decimated read.
        composite: the three band names shown to SAM (R, G, B order).
    """

    band_names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    coarse: CoarseRule
    valid_fraction: float
    composite: tuple[str, str, str]

    def to_dict(self) -> dict[str, object]:
        """JSON-able form for the manifest."""
        return {
            "band_names": list(self.band_names),
            "low": list(self.low),
            "high": list(self.high),
            "index": self.coarse.method,
            "coarse": self.coarse.to_dict(),
            "valid_fraction": self.valid_fraction,
            "composite": list(self.composite),
        }


def choose_composite(band_names: tuple[str, ...] | list[str]) -> tuple[str, str, str]:
    """First composite of :data:`COMPOSITES` whose bands are all mapped (else a band repeated)."""
    names = set(band_names)
    for composite in COMPOSITES:
        if set(composite) <= names:
            return composite
    ordered = list(band_names) * 3
    return ordered[0], ordered[1], ordered[2]


def compute_stats(ds: rasterio.DatasetReader, info: RasterInfo, config: SegmentConfig) -> ImageStats:
    """Whole-image statistics from one decimated read of the mapped bands.

    Raises:
        InputError: the raster holds no valid pixel, or the composite needs an unmapped band.
    """
    shape = decimated_shape(info.height, info.width, config.stats_size)
    data, valid = read_decimated(ds, info, shape, Resampling.nearest)
    return stats_from_array(data, valid, tuple(info.band_names), config, str(info.path))


def stats_from_array(
    data: np.ndarray, valid: np.ndarray, band_names: tuple[str, ...], config: SegmentConfig, where: str = "image"
) -> ImageStats:
    """Statistics of an image held in memory (what :func:`compute_stats` does after its read).

    Args:
        data: ``float32 (bands, rows, cols)`` in file units, bands in ``band_names`` order.
        valid: ``bool (rows, cols)``.
        band_names: names of the bands of ``data``.
        config: percentiles, coarse-mask and composite options.
        where: the image's name for messages.

    Raises:
        InputError: no valid pixel, or the composite needs an unmapped band.
    """
    if not valid.any():
        raise InputError(f"{where}: every pixel is nodata; nothing to segment")
    names = tuple(band_names)
    pixels = data[:, valid]
    floor, low, high = np.percentile(pixels, (FLOOR_PERCENTILE, *config.percentiles), axis=1)  # one partition
    high = np.where(high > low, high, low + 1)
    return ImageStats(
        band_names=names,
        low=tuple(float(v) for v in low),
        high=tuple(float(v) for v in high),
        coarse=fit_rule(
            data, valid, names, config.index, config.threshold, config.texture_window, config.min_area, floor.min()
        ),
        valid_fraction=float(valid.mean()),
        composite=resolve_composite(config.composite, names, where),
    )


def resolve_composite(requested: str, band_names: tuple[str, ...] | list[str], where: str = "image") -> tuple[str, str, str]:
    """The composite shown to SAM: :func:`choose_composite` for ``auto``, else the requested bands.

    Raises:
        InputError: a requested band is not mapped.
    """
    if requested == "auto":
        return choose_composite(band_names)
    composite = parse_composite(requested)
    missing = sorted(set(composite) - set(band_names))
    if missing:
        raise InputError(
            f"{where}: composite {','.join(composite)} needs band(s) {missing}, which are not mapped "
            f"(mapped: {', '.join(band_names)}); map them with --bands"
        )
    return composite


def to_rgb8(data: np.ndarray, valid: np.ndarray, stats: ImageStats) -> np.ndarray:
    """SAM's input for a tile: the composite bands stretched by the image's percentiles.

    Args:
        data: ``float32 (bands, rows, cols)`` in file units, bands in ``stats.band_names`` order.
        valid: ``bool (rows, cols)``; invalid pixels become 0.
        stats: the image's statistics.

    Returns:
        ``uint8 (rows, cols, 3)`` RGB.
    """
    names = list(stats.band_names)
    rgb = np.empty((*data.shape[1:], 3), dtype=np.uint8)
    for channel, name in enumerate(stats.composite):
        i = names.index(name)
        scaled = (data[i] - stats.low[i]) / (stats.high[i] - stats.low[i])
        rgb[..., channel] = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb
