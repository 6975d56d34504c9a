"""How an input's values become reflectance, when the user or the file says so.

Absolute tests (DSWE's partial-surface-water limits, Fmask's snow, cloud and water tests) need
reflectance; a ratio such as MNDWI does not. :func:`resolve_reflectance` looks, in this order, at:

1. ``--reflectance-scale`` / ``--reflectance-offset`` (reflectance = value x scale + offset);
2. a STAC Item's raster extension (``raster:bands`` scale and offset, the same for every mapped
   band; :mod:`samgeo_pipeline.io.stac_input` writes them into the input's VRT), source
   ``STAC raster:bands``;
3. the file's own scale and offset tags (GDAL's, as ``gdal_translate -a_scale`` writes them),
   when every mapped band has the same pair and it is not the identity;
4. a Landsat ``*_MTL.txt`` beside the input (exactly one in its folder): its
   ``REFLECTANCE_MULT_BAND_n`` / ``REFLECTANCE_ADD_BAND_n``, when equal for every reflective band
   (Landsat 8/9 level 1: 2e-5 and -0.1), divided by the sine of ``SUN_ELEVATION`` (top of
   atmosphere reflectance, as the USGS Landsat handbook gives it);
5. Sentinel-2's quantification value: uint16 data under the ``sentinel2`` band preset (given or
   guessed from 13 bands) is reflectance x 10000 (products of processing baseline 04.00 and later,
   from 2022 on, add an offset of -1000: pass ``--reflectance-offset -0.1`` for those).

Otherwise reflectance is unknown and the rule says which tests it dropped. Nothing is guessed
from the values' range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import rasterio

from samgeo_pipeline.io.raster import RasterInfo

#: Sentinel-2 L1C/L2A quantification value: reflectance x 10000 in uint16.
SENTINEL2_QUANTIFICATION = 10000.0
_MTL_LINE = re.compile(r"^\s*(REFLECTANCE_(?:MULT|ADD)_BAND_\d+|SUN_ELEVATION)\s*=\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Reflectance:
    """Reflectance = value x ``scale`` + ``offset`` for every mapped band.

    Attributes:
        scale, offset: the linear map from file values to reflectance (0-1).
        source: where it came from, for the manifest (``"--reflectance-scale"``,
            ``"STAC raster:bands"``, ``"file scale/offset tags"``, ``"LC08_..._MTL.txt"``,
            ``"Sentinel-2 quantification value 10000"``).
    """

    scale: float
    offset: float
    source: str


def resolve_reflectance(
    ds: rasterio.DatasetReader, info: RasterInfo, scale: float | None, offset: float, preset: str
) -> Reflectance | None:
    """The input's reflectance map (see the module docstring), or None when nothing says it.

    Args:
        ds: the open input.
        info: its :class:`RasterInfo` (mapped bands, dtype, path).
        scale, offset: the user's ``--reflectance-scale`` / ``--reflectance-offset``.
        preset: the ``--bands`` option as given (``auto``, a preset name or a mapping).
    """
    if scale is not None:
        return Reflectance(float(scale), float(offset), "--reflectance-scale")
    return _from_stac(ds) or _from_tags(ds, info) or _from_mtl(Path(info.path)) or _from_sentinel2(ds, info, preset)


def _from_stac(ds: rasterio.DatasetReader) -> Reflectance | None:
    from samgeo_pipeline.io.stac_input import REFLECTANCE_SOURCE, stac_metadata

    tags = stac_metadata(ds)
    try:
        scale, offset = float(tags["REFLECTANCE_SCALE"]), float(tags.get("REFLECTANCE_OFFSET", 0.0))
    except (KeyError, ValueError):
        return None
    if not (math.isfinite(scale) and math.isfinite(offset) and scale > 0):
        return None
    return Reflectance(scale, offset, REFLECTANCE_SOURCE)


def _from_tags(ds: rasterio.DatasetReader, info: RasterInfo) -> Reflectance | None:
    pairs = {(float(ds.scales[i - 1]), float(ds.offsets[i - 1])) for i in info.band_indexes}
    if len(pairs) != 1:
        return None
    scale, offset = pairs.pop()
    if (scale, offset) == (1.0, 0.0) or not math.isfinite(scale) or not math.isfinite(offset) or scale <= 0:
        return None
    return Reflectance(scale, offset, "file scale/offset tags")


def _from_mtl(path: Path) -> Reflectance | None:
    candidates = sorted(path.parent.glob("*_MTL.txt"))
    if len(candidates) != 1:
        return None
    try:
        text = candidates[0].read_text(errors="replace")[:1_000_000]
    except OSError:
        return None
    values: dict[str, float] = {}
    for key, value in _MTL_LINE.findall(text):
        try:
            values[key] = float(value.strip('"'))
        except ValueError:
            continue
    mults = {v for k, v in values.items() if k.startswith("REFLECTANCE_MULT")}
    adds = {v for k, v in values.items() if k.startswith("REFLECTANCE_ADD")}
    elevation = values.get("SUN_ELEVATION")
    if len(mults) != 1 or len(adds) != 1 or elevation is None or not 0 < elevation <= 90:
        return None
    sine = math.sin(math.radians(elevation))
    return Reflectance(mults.pop() / sine, adds.pop() / sine, candidates[0].name)


def _from_sentinel2(ds: rasterio.DatasetReader, info: RasterInfo, preset: str) -> Reflectance | None:
    guessed_s2 = info.bands.source == "guessed" and info.count == 13
    dtypes = {ds.dtypes[i - 1] for i in info.band_indexes}
    if (preset == "sentinel2" or guessed_s2) and dtypes == {"uint16"}:
        return Reflectance(1.0 / SENTINEL2_QUANTIFICATION, 0.0, "Sentinel-2 quantification value 10000")
    return None
