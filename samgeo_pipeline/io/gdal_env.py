"""GDAL's settings during a run: the block cache capped for every stage of every image.

The cache size is process-wide, so the cap is counted across threads rather than set and restored
per stage (:func:`gdal_env`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import rasterio

GDAL_CACHE_BYTES = 128 << 20
"""GDAL block cache during a run (see :func:`gdal_env`)."""


@contextlib.contextmanager
def gdal_env(read_once: bool = False) -> Iterator[None]:
    """The GDAL environment of a run: the block cache capped at :data:`GDAL_CACHE_BYTES`.

    GDAL's default cache is 5 % of the RAM, and a run over a big raster fills it (input blocks,
    output blocks), so the peak memory would grow with the raster up to that size. The tile reader
    reuses little more than a row of blocks, which the cap holds for rasters up to ~40k pixels wide.
    ``GDAL_CACHEMAX`` set in the process environment or in an enclosing ``rasterio.Env`` wins.
    The cache size is process-wide: the cap holds while any thread is inside a ``gdal_env`` and
    the size from before is put back when the last one leaves (:func:`_capped_cache`).

    Args:
        read_once: the files are read straight through, each block once (a work file turned into
            a COG or polygons): uncompressed GeoTIFF blocks then bypass the block cache
            (``GTIFF_DIRECT_IO``), which they would only fill (~110 MiB less at the peak of a
            16384² run's finish). That option is per thread: enter this on the reading thread.
    """
    with contextlib.ExitStack() as stack:
        if not ("GDAL_CACHEMAX" in os.environ or (rasterio.env.hasenv() and "GDAL_CACHEMAX" in rasterio.env.getenv())):
            stack.enter_context(_capped_cache())
        if read_once:
            stack.enter_context(rasterio.Env(GTIFF_DIRECT_IO=True))
        yield


_cache_lock = threading.Lock()
_cache_users = 0
_cache_before: object = None


@contextlib.contextmanager
def _capped_cache() -> Iterator[None]:
    """GDAL's block cache at :data:`GDAL_CACHE_BYTES` from the first entry to the last exit, any thread.

    ``rasterio.Env(GDAL_CACHEMAX=...)`` puts back, on exit, the size it found on entry, although
    the size is one for the whole process: a stage leaving lifted the cap under another image's
    stage still running, and the last one to leave could keep it for good.
    """
    global _cache_users, _cache_before
    with _cache_lock:
        if _cache_users == 0:
            _cache_before = rasterio.env.get_gdal_config("GDAL_CACHEMAX")
            rasterio.env.set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_BYTES)
        _cache_users += 1
    try:
        yield
    finally:
        with _cache_lock:
            _cache_users -= 1
            if _cache_users == 0:
                rasterio.env.set_gdal_config("GDAL_CACHEMAX", _cache_before)
