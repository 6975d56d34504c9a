"""Shared helpers of the benchmarks: synthetic rasters written by windows, child-process peak RSS.

Not a test module and not part of the library. The synthetic scene is NAIP-like (R, G, B, NIR,
uint8, nodata 0): meandering rivers every 2048 rows, lakes on a 1536-pixel lattice, textured land,
and a 64-pixel nodata margin on the left, so ``--model none`` and SAM both have real work. Every
pixel is a function of its global (row, col) and a per-window noise seed, so the raster is written
window by window and never held in memory whole.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin
from rasterio.windows import Window

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("SAMGEO_BENCH_CACHE", BENCH_DIR / ".cache"))

NODATA_MARGIN = 64
"""Columns of nodata (all bands 0) at the left edge of every synthetic raster."""


def scene_water(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Water of the synthetic scene at global pixel positions.

    Args:
        rows, cols: ``float32`` arrays of the same shape (broadcastable), global pixel row / col.

    Returns:
        ``bool`` array of their broadcast shape, True = water.
    """
    # Rivers: one meander per 2048-row band, centred at row 1024 of the band, +-300 rows.
    band = np.floor(rows / 2048.0)
    local = rows - band * 2048.0 - 1024.0
    centre = 300.0 * np.sin(cols / 900.0 + band)
    half_width = 20.0 + 8.0 * np.sin(cols / 97.0)
    water = np.abs(local - centre) < half_width
    # Lakes: one per 1536-pixel cell (none in ~30 % of the cells), radius 80-380, position hashed.
    cy, cx = np.floor(rows / 1536.0), np.floor(cols / 1536.0)
    u = np.modf(np.abs(np.sin(cy * 12.9898 + cx * 78.233)) * 43758.5453)[0]
    v = np.modf(np.abs(np.sin(cy * 39.3468 + cx * 11.135)) * 24634.6345)[0]
    radius = 80.0 + 300.0 * u
    ly = cy * 1536.0 + 400.0 + 736.0 * v
    lx = cx * 1536.0 + 400.0 + 736.0 * u
    lake = ((rows - ly) ** 2 + (cols - lx) ** 2 < radius**2) & (u > 0.3)
    return water | lake


def lattice_lakes(rows: np.ndarray, cols: np.ndarray, period: int = 512) -> np.ndarray:
    """One round lake (radius 90-160 pixels) in the middle of every ``period``² cell: ``bool``."""
    cy, cx = np.floor(rows / period), np.floor(cols / period)
    radius = 125.0 + 35.0 * np.sin(cy * 1.7 + cx * 2.3)
    dy = rows - (cy + 0.5) * period
    dx = cols - (cx + 0.5) * period
    return dy**2 + dx**2 < radius**2


PATTERNS = {"scene": scene_water, "lakes": lattice_lakes, "land": None}


def write_scene(
    path: Path,
    height: int,
    width: int,
    pattern: str = "scene",
    compress: str | None = "deflate",
    chunk: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a 4-band uint8 synthetic scene window by window (at most ``chunk``² pixels in memory).

    Args:
        path: output GeoTIFF (tiled 512², written to a temp name and renamed: :func:`samgeo_pipeline.demo.geotiff_writer`).
        height, width: size in pixels.
        pattern: ``scene`` (:func:`scene_water`), ``lakes`` (:func:`lattice_lakes`: four lakes in every
            1024² tile) or ``land`` (no water at all: every tile valid, none with coarse water).
        compress: ``deflate`` or ``None`` (uncompressed).
        chunk: side of the windows written at once.
        seed: noise seed.
    """
    # imported here: a child measuring an older library (--before) imports this module too
    from samgeo_pipeline.demo import LAND_RGBN, WATER_RGBN, geotiff_writer

    land = np.array(LAND_RGBN, np.float32)[:, None, None]
    wet = np.array(WATER_RGBN, np.float32)[:, None, None]
    water_fn = PATTERNS[pattern]
    with geotiff_writer(
        path, 4, height, width, "uint8", transform=from_origin(500000.0, 5600000.0, 1.0, 1.0), block_size=512,
        compress=compress, descriptions=("red", "green", "blue", "nir"), BIGTIFF="IF_SAFER",
    ) as dst:  # fmt: skip
        for r0 in range(0, height, chunk):
            for c0 in range(0, width, chunk):
                h, w = min(chunk, height - r0), min(chunk, width - c0)
                rows = np.arange(r0, r0 + h, dtype=np.float32)[:, None]
                cols = np.arange(c0, c0 + w, dtype=np.float32)[None, :]
                rng = np.random.default_rng([seed, r0, c0])
                texture = rng.normal(0.0, 6.0, (h, w)).astype(np.float32)
                if water_fn is not None:
                    is_water = water_fn(rows, cols)
                    bands = np.where(is_water[None], wet, land) + texture[None]
                else:
                    bands = land + texture[None]
                block = np.clip(bands, 1, 255).astype(np.uint8)
                margin = NODATA_MARGIN - c0
                if margin > 0:
                    block[:, :, :margin] = 0
                dst.write(block, window=Window(c0, r0, w, h))
    return path


def cached_scene(name: str, height: int, width: int, **kwargs: object) -> Path:
    """A synthetic scene under :data:`CACHE_DIR`, written only when missing."""
    path = CACHE_DIR / name
    if not path.is_file():
        t = time.perf_counter()
        print(f"writing {path} ({height}x{width}) ...", flush=True)
        write_scene(path, height, width, **kwargs)  # type: ignore[arg-type]
        print(f"  {time.perf_counter() - t:.1f} s, {path.stat().st_size / 2**20:.0f} MiB", flush=True)
    return path


def run_peak_rss(
    argv: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[int, float, float]:
    """Run ``argv`` as a child process and return its own peak RSS.

    Uses :func:`os.wait4`, whose resource usage is that one child's (RUSAGE_CHILDREN would be the
    maximum over every child waited for so far).

    Args:
        argv: the command.
        env: its environment (default: inherited).
        log: file for its stdout and stderr (default: inherited).

    Returns:
        ``(returncode, peak RSS in MiB, wall seconds)``.
    """
    t = time.perf_counter()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "w")) if log else None
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return proc.returncode, rss_kib / 1024.0, wall


def fmt_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
