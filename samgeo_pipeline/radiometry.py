"""Whole-image, nodata-aware radiometry: one normalisation and one index threshold per image.

Statistics come from a decimated read (longest side ``stats_size``), so every tile of an image is
normalised the same way (no per-tile stretch, no seams) and the water-index threshold is fixed
for the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
from rasterio.enums import Resampling
from skimage.filters import threshold_otsu

from samgeo_pipeline.config import SegmentConfig, parse_composite
from samgeo_pipeline.errors import InputError
from samgeo_pipeline.raster import RasterInfo, decimated_shape, read_decimated

ResolvedIndex = Literal["ndwi", "mndwi", "hsv"]

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
        index: the water index used.
        threshold: index threshold (water where index > threshold); None for HSV.
        valid_fraction: fraction of valid pixels in the decimated read.
        composite: the three band names shown to SAM (R, G, B order).
    """

    band_names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    index: ResolvedIndex
    threshold: float | None
    valid_fraction: float
    composite: tuple[str, str, str]

    def to_dict(self) -> dict[str, object]:
        """JSON-able form for the manifest."""
        return {
            "band_names": list(self.band_names),
            "low": list(self.low),
            "high": list(self.high),
            "index": self.index,
            "threshold": self.threshold,
            "valid_fraction": self.valid_fraction,
            "composite": list(self.composite),
        }


def resolve_index(requested: str, band_names: tuple[str, ...] | list[str]) -> ResolvedIndex:
    """Pick the water index from what is mapped (auto: MNDWI > NDWI > HSV).

    Raises:
        InputError: the requested index needs a band that is not mapped.
    """
    names = set(band_names)
    needs = {"ndwi": {"green", "nir"}, "mndwi": {"green", "swir"}, "hsv": {"red", "green", "blue"}}
    if requested == "auto":
        for candidate in ("mndwi", "ndwi", "hsv"):
            if needs[candidate] <= names:
                return candidate  # type: ignore[return-value]
        raise InputError(
            f"no water index possible with bands {sorted(names)}: map green+nir, green+swir or red+green+blue"
        )
    missing = needs[requested] - names
    if missing:
        raise InputError(f"index {requested} needs band(s) {sorted(missing)}; map them with --bands")
    return requested  # type: ignore[return-value]


def choose_composite(band_names: tuple[str, ...] | list[str]) -> tuple[str, str, str]:
    """First composite of :data:`COMPOSITES` whose bands are all mapped (else a band repeated)."""
    names = set(band_names)
    for composite in COMPOSITES:
        if set(composite) <= names:
            return composite
    ordered = list(band_names) * 3
    return ordered[0], ordered[1], ordered[2]


def water_index(data: np.ndarray, band_names: tuple[str, ...] | list[str], index: ResolvedIndex) -> np.ndarray:
    """Normalised-difference index of ``data`` (``float32 (bands, rows, cols)``), float32 in [-1, 1].

    NDWI = (green - nir) / (green + nir); MNDWI = (green - swir) / (green + swir). Where the sum is 0
    the index is 0.
    """
    names = list(band_names)
    other = "nir" if index == "ndwi" else "swir"
    green = data[names.index("green")]
    second = data[names.index(other)]
    total = green + second
    # In place (this runs on every tile): NaN -> 0; +-inf and anything outside [-1, 1] -> +-1.
    result = np.zeros(total.shape, np.result_type(total.dtype, np.float32))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(green - second, total, out=result, where=total != 0)
    np.copyto(result, 0.0, where=np.isnan(result))
    return np.clip(result, -1.0, 1.0, out=result).astype(np.float32, copy=False)


def water_index_above(
    data: np.ndarray, band_names: tuple[str, ...] | list[str], index: ResolvedIndex, threshold: float
) -> np.ndarray:
    """``water_index(data, ...) > threshold`` without forming the index (this runs on every tile).

    For ``-1 < threshold < 1``, (g - o) / (g + o) > t is (g - o) > t (g + o) where g + o > 0, the
    reverse where g + o < 0, and 0 > t where g + o = 0 (the index is 0 there). Other thresholds
    fall back to :func:`water_index`.

    Returns:
        ``bool (rows, cols)``.
    """
    if not -1.0 < threshold < 1.0:
        return water_index(data, band_names, index) > threshold
    names = list(band_names)
    green = data[names.index("green")]
    other = data[names.index("nir" if index == "ndwi" else "swir")]
    total = green + other
    diff = green - other
    scaled = total * np.float32(threshold)
    water = diff > scaled
    not_positive = total <= 0
    if not_positive.any():  # negative reflectances or zero sums: rare
        negative = total < 0
        water[negative] = diff[negative] < scaled[negative]
        water[total == 0] = threshold < 0
    return water


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
        config: percentiles, index, threshold and composite options.
        where: the image's name for messages.

    Raises:
        InputError: no valid pixel, or the composite needs an unmapped band.
    """
    if not valid.any():
        raise InputError(f"{where}: every pixel is nodata; nothing to segment")
    names = tuple(band_names)
    pixels = data[:, valid]
    low, high = np.percentile(pixels, config.percentiles, axis=1)  # one partition for both
    high = np.where(high > low, high, low + 1)
    index = resolve_index(config.index, names)
    threshold: float | None = None
    if index != "hsv":
        if config.threshold is not None:
            threshold = float(config.threshold)
        else:
            values = water_index(data, names, index)[valid]
            otsu = float(threshold_otsu(values)) if np.ptp(values) > 0 else float(values[0])
            threshold = float(np.clip(otsu, *config.otsu_range))
    return ImageStats(
        band_names=names,
        low=tuple(float(v) for v in low),
        high=tuple(float(v) for v in high),
        index=index,
        threshold=threshold,
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
