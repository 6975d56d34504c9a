"""``--model none`` throughput vs a bare windowed read of the same file (target >= 0.5x).

Both sides go over the same tile grid (default 1024² tiles, 128-pixel halo): the bare read does
``ds.read(bands, window=...)`` of each tile's read window (clipped to the raster) and nothing else;
the pipeline runs :func:`segment_raster` with ``model="none"`` in this process. Throughput is
raster pixels per second; the pipeline is given for its tile stage (read, coarse mask, write of
each core) and for the whole run (statistics, tiles, COG, polygons, quicklook), with the manifest's
seconds per stage. The file is read once before timing so both sides find it in the page cache;
each side runs ``--repeat`` times and the best time counts. Both run under the GDAL environment the
pipeline itself uses (:func:`samgeo_pipeline.io.gdal_env.gdal_env`).

Usage::

    python benchmarks/bench_throughput.py                  # 8192² deflate scene
    python benchmarks/bench_throughput.py --size 16384 --compress none
    python benchmarks/bench_throughput.py --profile        # cProfile of the tile stage's functions
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from _common import cached_scene, fmt_table
from rasterio.windows import Window

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.io.raster import RasterInfo, inspect_raster
from samgeo_pipeline.io.tiling import TileGrid, make_grid
from samgeo_pipeline.run import image as pipeline
from samgeo_pipeline.run import prepare as reader
from samgeo_pipeline.run import sink

try:
    from samgeo_pipeline.io.gdal_env import gdal_env
except ImportError:  # a library from before gdal_env (to compare against it): GDAL's defaults
    gdal_env = contextlib.nullcontext  # type: ignore[assignment]

TARGET = 0.5


def bare_read_seconds(info: RasterInfo, grid: TileGrid) -> float:
    """Seconds to read every tile's read window (clipped to the raster), mapped bands, native dtype."""
    t = time.perf_counter()
    with rasterio.open(info.path) as ds:
        for tile in grid:
            win = tile.read_window
            r0, c0 = max(0, int(win.row_off)), max(0, int(win.col_off))
            r1 = min(info.height, int(win.row_off + win.height))
            c1 = min(info.width, int(win.col_off + win.width))
            ds.read(info.band_indexes, window=Window(c0, r0, c1 - c0, r1 - r0))
    return time.perf_counter() - t


def profile_tile_stage(path: Path, config: SegmentConfig, top: int) -> None:
    """cProfile the tile stage's work (prepare + write of every tile), run in this thread."""
    from samgeo_pipeline.water.radiometry import compute_stats

    info = inspect_raster(path, config.bands, config.nodata)
    out = Path(tempfile.mkdtemp(prefix="samgeo-bench-prof-"))
    with gdal_env(), rasterio.open(path) as ds:
        stats = compute_stats(ds, info, config)
        tile_sink = sink.TileSink(info, config, out)
        profiler = cProfile.Profile()
        profiler.enable()
        for tile in make_grid(info, config):
            tile_sink.write(reader.prepare_tile(ds, info, stats, tile, config), None)
        profiler.disable()
        tile_sink.remove_work()
    shutil.rmtree(out, ignore_errors=True)
    print(f"\ncProfile of the tile stage (sequential, one thread), top {top} by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="side of the synthetic raster (default 8192)")
    parser.add_argument("--compress", choices=("deflate", "none"), default="deflate", help="input compression")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--halo", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2, help="runs per side; the best counts (default 2)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the tile stage")
    parser.add_argument("--top", type=int, default=20, help="rows of the profile (default 20)")
    args = parser.parse_args()

    compress = None if args.compress == "none" else args.compress
    path = cached_scene(f"scene_{args.size}_{args.compress}.tif", args.size, args.size, compress=compress)
    config = SegmentConfig(model="none", tile_size=args.tile_size, halo=args.halo, overwrite=True, progress=False)
    info = inspect_raster(path, config.bands, config.nodata)
    grid = make_grid(info, config)
    pixels = info.width * info.height

    with gdal_env():
        bare_read_seconds(info, grid)  # page cache warm-up, not timed
        bare = min(bare_read_seconds(info, grid) for _ in range(args.repeat))

    out_root = Path(tempfile.mkdtemp(prefix="samgeo-bench-tp-"))
    runs = []
    try:
        for _ in range(args.repeat):
            result = pipeline.segment_raster(path, out_root / path.stem, config)
            runs.append(result.seconds)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    best = min(runs, key=lambda s: s["tiles"])
    best_total = min(s["total"] for s in runs)

    mpx, n = pixels / 1e6, len(grid)
    rows = [
        [label, f"{sec:.2f}", f"{mpx / sec:.1f}", f"{n / sec:.1f}", f"{bare / sec:.2f}"]
        for label, sec in (("bare windowed read", bare), ("pipeline tile stage", best["tiles"]),
                           ("pipeline whole run", best_total))
    ]
    print()
    print(f"{info.height}x{info.width} 4-band uint8 ({args.compress}), {len(grid)} tiles of {config.tile_size}² "
          f"(halo {config.halo}), best of {args.repeat}")
    print(fmt_table(["", "seconds", "Mpx/s", "tiles/s", "vs bare read"], rows))
    print()
    stages = {k: v for k, v in best.items() if k != "total"}
    total = sum(stages.values())
    print("seconds per stage (manifest, run with the best tile stage):")
    order = sorted(stages, key=stages.get, reverse=True)  # type: ignore[arg-type]
    print(fmt_table(["stage", "seconds", "share"], [[k, f"{stages[k]:.2f}", f"{100 * stages[k] / total:.0f} %"]
                                                    for k in order]))
    print(f"dominant stage: {order[0]} ({100 * stages[order[0]] / total:.0f} % of the run)")
    print()
    for label, seconds in (("tile stage", best["tiles"]), ("whole run", best_total)):
        ratio = bare / seconds
        print(f"throughput ratio, {label} / bare read: {ratio:.2f}x  "
              f"(target >= {TARGET}x: {'meets' if ratio >= TARGET else 'MISSES'})")
    if args.profile:
        profile_tile_stage(path, config, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
