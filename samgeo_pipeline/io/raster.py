"""Opening and checking input rasters; reading windows of the mapped bands with their validity.

Frames: rasterio windows are in *source pixels* (row, col of the input). Arrays returned here are
``float32`` of shape ``(bands, rows, cols)`` in the file's units, plus a ``bool`` validity mask of
shape ``(rows, cols)`` (True = some mapped band holds data, GDAL's per-band nodata rule; see
:func:`nodata_valid`).
"""

from __future__ import annotations

import glob
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from samgeo_pipeline.errors import (
    InputError,
    NotGeoreferencedWarning,
    RasterReadError,
    first_line,
    ignore_rasterio_georeference_warnings,
)
from samgeo_pipeline.io.bands import BandMap, parse_bands

ignore_rasterio_georeference_warnings()

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")


def expand_inputs(specs: Iterable[str | os.PathLike[str]], exclude: str | os.PathLike[str] | None = None) -> list[Path]:
    """Expand file paths, directories (their rasters, recursively) and glob patterns.

    Files named explicitly are kept whatever their suffix (a bad one fails later with its own
    message); directories and globs contribute files with a raster suffix only, never one below
    ``exclude`` (the output root: outputs are never taken as inputs). Order is stable and
    duplicates are dropped.

    Raises:
        InputError: a spec matches nothing.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        elif path.exists():
            matches = [path]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            matches = [p for p in matches if p.suffix.lower() in RASTER_SUFFIXES]
        else:
            raise InputError(f"{text}: no such file or directory")
        if skip is not None and matches and matches != [path]:  # found by a search, not named
            matches = [p for p in matches if not _below(p, skip)]
            if not matches:
                raise InputError(f"{text}: matches no raster file outside the output root {exclude} "
                                 "(outputs are never taken as inputs)")
        if not matches:
            raise InputError(f"{text}: matches no raster file ({', '.join(RASTER_SUFFIXES)})")
        found.extend(matches)
    return list(dict.fromkeys(p.resolve() for p in found))


def _below(path: Path, folder: Path) -> bool:
    """True when ``path``, or the folder it was found in, resolves below the resolved ``folder``."""
    parent = path.parent.resolve()
    return folder == parent or folder in parent.parents or folder in path.resolve().parents


@dataclass(frozen=True)
class RasterInfo:
    """What the pipeline needs to know of an input, read once from its header."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    nodata: float | None
    """Nodata value used (the ``--nodata`` override, else the file's), or None."""
    bands: BandMap
    has_mask: bool
    """True when the file carries a per-dataset mask or an unmapped alpha band (used when nodata is None)."""
    nodata_source: str | None = None
    """Where :attr:`nodata` comes from: ``option`` (``--nodata``), ``file``, ``zero collar``
    (:func:`~samgeo_pipeline.io.zero_collar.with_zero_collar`), or None when there is none."""

    @property
    def georeferenced(self) -> bool:
        """True when the file has both a CRS and a non-identity geotransform."""
        return self.crs is not None and self.transform != Affine.identity()

    @property
    def band_indexes(self) -> list[int]:
        """1-based indexes of the mapped bands, in :meth:`BandMap.as_dict` order."""
        return list(self.bands.as_dict().values())

    @property
    def band_names(self) -> list[str]:
        """Names of the mapped bands, in the order of :attr:`band_indexes`."""
        return list(self.bands.as_dict())


def inspect_raster(
    path: str | os.PathLike[str], bands: str | dict[str, int] = "auto", nodata: float | None = None, warn: bool = True
) -> RasterInfo:
    """Open ``path``, check it and return its :class:`RasterInfo`.

    Warns with :class:`NotGeoreferencedWarning` (:func:`not_georeferenced_message`) when the file
    has no CRS or geotransform (the run goes on in pixel coordinates); ``warn=False`` leaves that to
    the caller.

    Raises:
        InputError: empty file, not a raster, or a mapped band that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with rasterio.open(path) as ds:
            band_map = parse_bands(bands, ds.count, ds.descriptions, path)
            band_map.check(ds.count, path)
            file_nodata = ds.nodata
            flags = ds.mask_flag_enums[0] if ds.count else []
            # GDAL flags the 4th band of a 4-band uint8 GeoTIFF as alpha by default; when that
            # band is mapped (NAIP's NIR), it is data, not a validity mask.
            alphas = {i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha}
            mapped_alpha = MaskFlags.alpha in flags and bool(alphas & set(band_map.as_dict().values()))
            info = RasterInfo(
                path=path,
                width=ds.width,
                height=ds.height,
                count=ds.count,
                dtype=ds.dtypes[0],
                crs=ds.crs,
                transform=ds.transform,
                nodata=nodata if nodata is not None else file_nodata,
                bands=band_map,
                has_mask=(MaskFlags.per_dataset in flags or MaskFlags.alpha in flags) and not mapped_alpha,
                nodata_source="option" if nodata is not None else "file" if file_nodata is not None else None,
            )
    except InputError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise InputError(f"{path}: {exc}") from None
    except RasterioError as exc:
        raise InputError(f"{path}: not a readable raster ({first_line(exc)})") from None
    if warn and not info.georeferenced:
        warnings.warn(not_georeferenced_message(path), NotGeoreferencedWarning, stacklevel=2)
    return info


def not_georeferenced_message(path: str | os.PathLike[str]) -> str:
    """What a raster without CRS or geotransform is warned with."""
    return f"{path}: no CRS or geotransform; outputs are in pixel coordinates and areas are unknown"


def read_bands(
    ds: rasterio.DatasetReader,
    info: RasterInfo,
    window: Window,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the mapped bands of ``window`` (source pixels, inside the raster).

    Args:
        ds: open dataset of ``info.path``.
        info: the raster's info (band map, nodata).
        window: window in source pixels; must lie inside the raster.
        out_shape: ``(rows, cols)`` to resample to; ``None`` for the window's own size.
        resampling: resampling when ``out_shape`` differs from the window size.

    Returns:
        ``(data, valid)``: ``float32 (bands, rows, cols)`` and ``bool (rows, cols)``.

    Raises:
        RasterReadError: the file cannot be read there (corrupt or truncated).
    """
    native, valid = read_native(ds, info, window, out_shape, resampling)
    return as_float32(native), valid


def read_native(
    ds: rasterio.DatasetReader,
    info: RasterInfo,
    window: Window,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_bands` without the conversion: the mapped bands in the file's own dtype.

    ``as_float32(native)`` is :func:`read_bands`'s ``data``. Integer data of at most 16 bits can
    then be stretched by a lookup table (:func:`samgeo_pipeline.water.radiometry.to_rgb8`).

    Returns:
        ``(native, valid)``: ``(bands, rows, cols)`` in the file's dtype and ``bool (rows, cols)``.

    Raises:
        RasterReadError: the file cannot be read there (corrupt or truncated).
    """
    shape = out_shape or (int(window.height), int(window.width))
    try:
        native = ds.read(
            info.band_indexes, window=window, out_shape=(len(info.band_indexes), *shape), resampling=resampling
        )
        valid = nodata_valid(native, info.nodata)
        if info.nodata is None and info.has_mask:
            mask = ds.read_masks(1, window=window, out_shape=shape, resampling=Resampling.nearest)
            valid &= mask > 0
    except RasterioError as exc:
        raise RasterReadError(f"{info.path}: read failed at window {window_str(window)} ({first_line(exc)})") from None
    return native, valid


def as_float32(native: np.ndarray) -> np.ndarray:
    """Bands as read, as ``float32``; NaN/inf become 0 (a float band without data where others have it).

    A float32 ``native`` is converted in place and returned (no copy), so it must not be used after.
    """
    data = native.astype(np.float32, copy=False)
    if native.dtype.kind == "f":
        data = np.nan_to_num(data, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return data


def nodata_valid(native: np.ndarray, nodata: float | None) -> np.ndarray:
    """``bool (rows, cols)``: False only where EVERY band is nodata (GDAL's per-band rule).

    A pixel with data in some band is valid: in NAIP (nodata 0) deep water often has NIR = 0
    while red, green and blue hold data, and it is exactly that water that must not become a hole.
    Float bands: NaN/inf count as nodata of that band. Computed on the native dtype (4x less
    memory traffic than on float32 for uint8 inputs).

    Args:
        native: ``(bands, rows, cols)`` as read, any dtype.
        nodata: the nodata value, or None.
    """
    usable = nodata is not None and not np.isnan(nodata) and _representable(nodata, native.dtype)
    if native.dtype.kind in "iub" and native.ndim == 3 and len(native) > 0:
        # Integers: valid = some band differs from nodata, one band at a time (no (bands, rows,
        # cols) temporary; the same result as the general path below).
        if not usable:
            return np.ones(native.shape[1:], dtype=bool)
        value = native.dtype.type(nodata)
        valid: np.ndarray = native[0] != value
        for band in native[1:]:
            valid |= band != value
        return valid
    missing = None
    if native.dtype.kind == "f":
        missing = ~np.isfinite(native)
    if usable:
        equal = native == native.dtype.type(nodata)
        missing = equal if missing is None else missing | equal
    if missing is None:
        return np.ones(native.shape[1:], dtype=bool)
    some_band_valid: np.ndarray = ~missing.all(axis=0)
    return some_band_valid


def open_for_tiles(info: RasterInfo, resampled: bool) -> rasterio.DatasetReader:
    """``info.path`` opened for the tile reads.

    With a zero collar (:func:`~samgeo_pipeline.io.zero_collar.with_zero_collar`) and tiles resampled (``--gsd``), the file is
    opened through GDAL's ``vrt://`` with ``a_nodata=0``: it then reads exactly as if it were
    tagged nodata 0, so resampling leaves the fill out instead of blending it into the edge of
    the footprint (a dark fringe the coarse mask took for water). Without resampling the reads are
    the same either way and the file is opened directly; so it is when its path holds a ``?``
    (which ``vrt://`` would take for its options).

    Args:
        info: the run's raster info.
        resampled: True when the tiles are read at another resolution than the file's.
    """
    if info.nodata_source == "zero collar" and resampled and "?" not in str(info.path):
        return rasterio.open(f"vrt://{info.path}?a_nodata=0")
    return rasterio.open(info.path)


def _representable(value: float, dtype: np.dtype) -> bool:
    """True when ``value`` is a value of ``dtype`` (an integral in range for integer dtypes)."""
    if dtype.kind == "f":
        return True
    if dtype.kind == "b":
        return value in (0, 1)
    limits = np.iinfo(dtype)
    return float(value).is_integer() and limits.min <= value <= limits.max


def read_decimated(
    ds: rasterio.DatasetReader,
    info: RasterInfo,
    shape: tuple[int, int],
    resampling: Resampling,
    chunk: int = 2048,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole raster's mapped bands resampled to ``shape``, read by chunks.

    Same result as :func:`read_bands` of the full window with ``out_shape=shape`` on the full
    resolution, but each read covers about ``chunk``² source pixels: a single decimated read makes
    GDAL go band by band over the whole raster, decoding every block once per band unless the block
    cache holds the whole raster (it does not under :func:`~samgeo_pipeline.io.gdal_env.gdal_env`). Source windows are
    fractional where ``shape`` does not divide the raster evenly, which GDAL resamples exactly as
    in the single read. The file's overviews are never read (GDAL would serve a decimated read
    from them): their values are resampled by whatever method built them, so the image's
    statistics would depend on whether it was saved as a COG (on an 8192² scene the 2-98 %
    stretch moved by up to 10 DN and the NIR limit by 3).

    Args:
        ds: open dataset of ``info.path``.
        info, shape, resampling, chunk: see above.
        workers: threads reading chunks, each through its own handle on ``info.path`` (GDAL decodes
            without the GIL); 1: every chunk through ``ds``. The result does not depend on it.

    Returns:
        ``(data, valid)``: ``float32 (bands, rows, cols)`` and ``bool (rows, cols)``, ``(rows, cols) = shape``.
    """
    if tuple(shape) != (info.height, info.width) and ds.overviews(info.band_indexes[0]):
        with _open_full_resolution(info.path) as full:
            return read_decimated(full, info, shape, resampling, chunk, workers)
    rows, cols = shape
    fy, fx = info.height / rows, info.width / cols
    step_r, step_c = max(1, int(chunk / fy)), max(1, int(chunk / fx))
    data = np.empty((len(info.band_indexes), rows, cols), np.float32)
    valid = np.empty((rows, cols), bool)
    chunks = [
        (r0, min(rows, r0 + step_r), c0, min(cols, c0 + step_c))
        for r0 in range(0, rows, step_r)
        for c0 in range(0, cols, step_c)
    ]

    def read(handle: rasterio.DatasetReader, r0: int, r1: int, c0: int, c1: int) -> None:
        window = Window(c0 * fx, r0 * fy, (c1 - c0) * fx, (r1 - r0) * fy)
        data[:, r0:r1, c0:c1], valid[r0:r1, c0:c1] = read_bands(handle, info, window, (r1 - r0, c1 - c0), resampling)

    if workers <= 1 or len(chunks) <= 1:
        for bounds in chunks:
            read(ds, *bounds)
        return data, valid
    local = threading.local()
    handles: list[rasterio.DatasetReader] = []
    lock = threading.Lock()

    def read_here(bounds: tuple[int, int, int, int]) -> None:
        handle = getattr(local, "ds", None)
        if handle is None:
            handle = local.ds = _open_full_resolution(info.path)
            with lock:
                handles.append(handle)
        read(handle, *bounds)

    try:
        with ThreadPoolExecutor(max_workers=min(workers, len(chunks)), thread_name_prefix="samgeo-stats") as pool:
            for future in [pool.submit(read_here, bounds) for bounds in chunks]:
                future.result()
    finally:
        for handle in handles:
            handle.close()
    return data, valid


def _open_full_resolution(path: Path) -> rasterio.DatasetReader:
    """``path`` opened without its overviews: decimated reads resample the full resolution."""
    return rasterio.open(path, OVERVIEW_LEVEL="NONE")


def window_str(window: Window) -> str:
    """``row_off,col_off+heightxwidth`` for messages."""
    return f"row {int(window.row_off)}, col {int(window.col_off)}, {int(window.height)}x{int(window.width)}"


def decimated_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Shape of a read whose longest side is at most ``max_side``, keeping the aspect ratio."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def as_tuple(values: Sequence[float]) -> tuple[float, ...]:
    """Plain Python floats for JSON."""
    return tuple(float(v) for v in values)
