"""Peak RSS of ``samgeo-pipeline segment --model none`` on a 16384² vs a 4096² raster (target <= 1.2x).

Each segment runs in a fresh child process (``python -m samgeo_pipeline.cli``) and its own peak RSS
is read with ``os.wait4``. A third child that only imports the CLI gives the fixed floor (Python,
torch, GDAL), so the growth above it is printed too. Inputs are 4-band uint8 synthetic scenes with
rivers, lakes and a nodata margin, written by windows and cached under ``benchmarks/.cache``.

Usage::

    python benchmarks/bench_memory.py                    # 4096² vs 16384², deflate inputs
    python benchmarks/bench_memory.py --compress none    # uncompressed inputs (1 GiB for 16384²)
    python benchmarks/bench_memory.py --env GDAL_CACHEMAX=2048   # extra env for the children
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from _common import cached_scene, fmt_table, run_peak_rss

TARGET = 1.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=4096, help="side of the small raster (default 4096)")
    parser.add_argument("--large", type=int, default=16384, help="side of the large raster (default 16384)")
    parser.add_argument("--compress", choices=("deflate", "none"), default="deflate", help="input compression")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra env for the children")
    parser.add_argument("--keep", type=Path, help="keep the outputs under this folder (default: a temp dir)")
    args = parser.parse_args()

    compress = None if args.compress == "none" else args.compress
    inputs = {
        side: cached_scene(f"scene_{side}_{args.compress}.tif", side, side, compress=compress)
        for side in (args.small, args.large)
    }
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in args.env)

    rc, floor_mib, _ = run_peak_rss(
        [sys.executable, "-c", "import samgeo_pipeline.cli, samgeo_pipeline.run.batch, samgeo_pipeline.run.image"], env
    )
    if rc:
        print("importing samgeo_pipeline failed", file=sys.stderr)
        return 1

    out_root = args.keep or Path(tempfile.mkdtemp(prefix="samgeo-bench-mem-"))
    rows, peaks, seconds = [], {}, {}
    for side, path in inputs.items():
        out = out_root / f"run_{side}"
        argv = [sys.executable, "-m", "samgeo_pipeline.cli", "segment", str(path), "--out", str(out),
                "--model", "none", "--overwrite", "--no-progress"]
        log = out_root / f"run_{side}.log"
        rc, peak, wall = run_peak_rss(argv, env, log)
        if rc:
            print(f"segment failed on {path} (exit {rc}): {log.read_text()[-2000:]}", file=sys.stderr)
            return 1
        manifest = json.loads((out / path.stem / "manifest.json").read_text())
        peaks[side], seconds[side] = peak, manifest["seconds"]
        rows.append([f"{side}x{side}", f"{path.stat().st_size / 2**20:.0f}", f"{peak:.0f}",
                     f"{peak - floor_mib:.0f}", f"{wall:.1f}", manifest["tiles"]["total"],
                     f"{100 * manifest['water']['fraction_of_valid']:.1f}"])

    print()
    print(f"peak RSS, --model none, {args.compress} 4-band uint8 inputs; import-only floor {floor_mib:.0f} MiB")
    if args.env:
        print(f"child env: {' '.join(args.env)}")
    print(fmt_table(["raster", "file MiB", "peak RSS MiB", "above floor", "wall s", "tiles", "water %"], rows))
    print()
    print("seconds per stage (manifest):")
    stages = list(seconds[args.small])
    print(fmt_table(["raster", *stages], [[f"{s}x{s}", *(f"{seconds[s][k]:.2f}" for k in stages)] for s in seconds]))
    ratio = peaks[args.large] / peaks[args.small]
    above = (peaks[args.large] - floor_mib) / max(1.0, peaks[args.small] - floor_mib)
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print()
    print(f"peak RSS ratio {args.large}²/{args.small}²: {ratio:.2f}x  (target <= {TARGET}x: {verdict})")
    print(f"growth above the import floor: {above:.2f}x  ({args.large}² pixels are "
          f"{(args.large / args.small) ** 2:.0f}x as many)")
    if not args.keep:
        import shutil

        shutil.rmtree(out_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
