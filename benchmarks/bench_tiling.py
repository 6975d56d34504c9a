"""SAM work per image pixel: tiles and SAM input megapixels per image megapixel for a few raster sizes.

Pure geometry (reads nothing but a tiny header): for each raster size, with and without ``--gsd``,
the grid's tiles (rows x cols) and the SAM input megapixels per image megapixel when every tile
goes to SAM (each tile is 1024² at SAM's input): 1.0 would be no overlap and no padding; the halo
rule alone costs ``(tile / (tile - 2 halo))²`` = 1.78 at the defaults on large rasters.

``--before DIR`` prints the same table for a second copy of the library (``PYTHONPATH=DIR``, e.g.
an export of an older commit) beside this checkout's.

Usage::

    python benchmarks/bench_tiling.py
    python benchmarks/bench_tiling.py --before /tmp/tiling_before
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SAM_INPUT_SIDE = 1024
RESOLUTION = 0.6  # NAIP-like pixels, metres
#: (height, width) of the rasters measured.
SIZES = [(934, 723), (1600, 1600), (2000, 3000), (4000, 4000), (8192, 8192)]
#: ``--gsd`` values measured (None: the file's own pixels; 1.0 and 1.2 on 0.6 m pixels).
GSDS = [None, 1.0, 1.2]


def model_px_per_image_px(grid: Any, height: int, width: int) -> float:
    """SAM input pixels per image pixel with every tile sent to SAM: the library's
    ``TileGrid.model_pixels_per_image_pixel``, or (a library from before it) the same from the tile count."""
    method = getattr(grid, "model_pixels_per_image_pixel", None)
    return float(method()) if method is not None else len(grid) * SAM_INPUT_SIDE**2 / (height * width)


def figures(tile_size: int, halo: int) -> list[dict[str, Any]]:
    """Tiles and SAM MP per image MP for every size x gsd, with the library this process imports."""
    import numpy as np
    from rasterio.transform import Affine

    import samgeo_pipeline
    from samgeo_pipeline.config import SegmentConfig
    from samgeo_pipeline.io.raster import inspect_raster
    from samgeo_pipeline.io.tiling import make_grid

    sys.path.insert(0, str(REPO))
    from tests.scenes import write_raster

    rows = []
    with tempfile.TemporaryDirectory(prefix="samgeo-bench-tiling-") as tmp:
        header = write_raster(Path(tmp) / "h.tif", np.ones((4, 8, 8), np.uint8),
                              transform=Affine(RESOLUTION, 0, 0, 0, -RESOLUTION, 0))  # fmt: skip
        base = inspect_raster(header)
        for (height, width), gsd in [(s, g) for g in GSDS for s in SIZES]:
            info = dataclasses.replace(base, height=height, width=width)
            grid = make_grid(info, SegmentConfig(model="none", tile_size=tile_size, halo=halo, gsd=gsd))
            rows.append({
                "size": f"{height}x{width}", "gsd": gsd, "rows": grid.rows, "cols": grid.cols,
                "model_mp_per_image_mp": model_px_per_image_px(grid, height, width),
                "library": str(Path(samgeo_pipeline.__file__).resolve().parent),
            })  # fmt: skip
    return rows


def child(library: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """:func:`figures` in a child process whose ``PYTHONPATH`` puts ``library`` first."""
    env = dict(os.environ, PYTHONPATH=f"{library}{os.pathsep}{REPO}")
    argv = [sys.executable, __file__, "--json-only", "--tile-size", str(args.tile_size), "--halo", str(args.halo)]
    return json.loads(subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--halo", type=int, default=128)
    parser.add_argument("--before", type=Path, help="a second library checkout to print beside this one")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json_only:
        print(json.dumps(figures(args.tile_size, args.halo)))
        return 0
    columns = {"this checkout": child(REPO, args)}
    if args.before:
        columns = {"before": child(args.before.resolve(), args), "after": columns["this checkout"]}
    print(f"tiles {args.tile_size}² (halo {args.halo}), {RESOLUTION} m pixels; SAM MP per image MP with every "
          "tile sent to SAM (1024² each)")
    for label, rows in columns.items():
        print(f"{label}: library {rows[0]['library']}")
    header = "| raster | gsd | " + " | ".join(f"{k}: tiles, SAM MP / image MP" for k in columns) + " |"
    print(header)
    print("|" + "---|" * (2 + len(columns)))
    for i, row in enumerate(next(iter(columns.values()))):
        cells = [f"{r[i]['rows']}x{r[i]['cols']} = {r[i]['rows'] * r[i]['cols']}, {r[i]['model_mp_per_image_mp']:.2f}"
                 for r in columns.values()]
        print(f"| {row['size']} | {row['gsd'] or '-'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
