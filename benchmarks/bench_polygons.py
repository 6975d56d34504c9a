"""Polygons of a noisy mask: ``write_polygons`` vs a bare ``rasterio.features.shapes`` (target <= 2x).

The mask is what a model gives before any cleaning: Gaussian-smoothed white noise (sigma 2.2 px,
seeded) thresholded at its median, so half the pixels are water; at 8192² that is 56,909
8-connected components (one spans the raster) and 62,767 4-connected ones (the largest with 8,321
holes), crossing every window border; plus a 64-column nodata (255) margin. It is written band by
band as a tiled, deflate uint8 GeoTIFF (EPSG:32633, 1 m pixels) under ``benchmarks/.cache``.

Every variant runs in a fresh child process, timed inside the child (wall and CPU seconds); peak
RSS is the child's own ``ru_maxrss`` when the timed part ends (a child that only imports the same
modules gives the floor). The parent stays small (it writes the mask and counts components in
children too): on Linux a child's ``ru_maxrss`` starts from its parent's RSS at the fork.

- ``bare4`` / ``bare8``: ``features.shapes`` over the whole mask at once (read whole, outside the
  timing), 4- / 8-connected, every shape iterated; nothing converted or written.
- ``new``: :func:`samgeo_pipeline.outputs.vectorize.write_polygons` of this checkout (``--window``).
- ``old`` (``--old``): ``write_polygons`` of ``samgeo_pipeline/outputs/vectorize.py`` at ``--old-rev``
  (default 445fb88, before issue 8), loaded from git into a module of its own.

``merge s`` is the part of the time spent merging pieces across window borders: the old one
``shapely.union_all`` of every polygon that touches a window border, the new per-region dissolves.
After the timing each child reads its GeoPackage back (not timed) for the polygon count, the
invalid geometries and the most holes in one polygon; another child counts the mask's 4- and
8-connected water components (OpenCV, whole mask).

Usage::

    python benchmarks/bench_polygons.py                       # 8192²: bare4, bare8, new (~1 min)
    python benchmarks/bench_polygons.py --old                 # + the old implementation (~2.5 min more)
    python benchmarks/bench_polygons.py --size 16384 --no-bare   # memory at 16384²
    python benchmarks/bench_polygons.py --size 2048 --old     # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import rasterio
from _common import BENCH_DIR, CACHE_DIR, fmt_table
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

TARGET = 2.0
OLD_REV = "445fb88"
SIGMA = 2.2
BAND = 512
MARGIN = 64


def write_noisy_mask(path: Path, size: int, seed: int = 0) -> Path:
    """Write the noisy ``size``² mask band by band (512 rows of noise each, smoothed with both neighbours)."""
    from scipy import ndimage

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "nodata": 255,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
        "crs": CRS.from_epsg(32633), "transform": from_origin(500000.0, 5600000.0, 1.0, 1.0),
    }  # fmt: skip
    bands = (size + BAND - 1) // BAND

    def noise(i: int) -> np.ndarray:
        if i < 0 or i >= bands:
            return np.zeros((BAND, size), np.float32)
        rows = min(BAND, size - i * BAND)
        return np.random.default_rng([seed, i]).standard_normal((rows, size), dtype=np.float32)

    with rasterio.open(tmp, "w", **profile) as dst:
        prev, cur = noise(-1), noise(0)
        for i in range(bands):
            nxt = noise(i + 1)
            smooth = ndimage.gaussian_filter(np.concatenate([prev, cur, nxt]), SIGMA)[len(prev) : len(prev) + len(cur)]
            mask = (smooth > 0).astype(np.uint8)
            mask[:, :MARGIN] = 255
            dst.write(mask, 1, window=Window(0, i * BAND, size, len(cur)))
            prev, cur = cur, nxt
    tmp.replace(path)
    return path


def cached_mask(size: int, seed: int) -> Path:
    """The noisy mask under ``CACHE_DIR``, written (by a child process) only when missing."""
    path = CACHE_DIR / f"noisy_mask_{size}_seed{seed}.tif"
    if not path.is_file():
        t = time.perf_counter()
        print(f"writing {path} ...", flush=True)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import bench_polygons as b; "
            "b.write_noisy_mask(b.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))"
        )
        subprocess.run([sys.executable, "-c", code, str(BENCH_DIR), str(path), str(size), str(seed)], check=True)
        print(f"  {time.perf_counter() - t:.1f} s, {path.stat().st_size / 2**20:.1f} MiB", flush=True)
    return path


def load_old(rev: str) -> types.ModuleType:
    """``samgeo_pipeline/outputs/vectorize.py`` at git revision ``rev`` as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "show", f"{rev}:samgeo_pipeline/outputs/vectorize.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType(f"vectorize_{rev}")
    exec(compile(source, f"{rev}:samgeo_pipeline/outputs/vectorize.py", "exec"), module.__dict__)
    return module


def time_merges(module: types.ModuleType, variant: str) -> list[float]:
    """Wrap the step that merges pieces across window borders; returns the list its seconds add up in.

    Old: the one ``shapely.union_all`` of every polygon touching a window border. New: ``_dissolve``
    (each region's pieces).
    """
    spent = [0.0]

    def timed(func):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t

        return wrapper

    if variant == "new":
        module._dissolve = timed(module._dissolve)
    else:
        import shapely

        names = {k: getattr(shapely, k) for k in dir(shapely) if not k.startswith("__")}
        module.shapely = types.SimpleNamespace(**names)  # the old module's own view of shapely
        module.shapely.union_all = timed(shapely.union_all)
    return spent


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def read_back(gpkg: Path) -> dict:
    """Feature count, invalid geometries and the most holes in one polygon of layer ``water``."""
    import pyogrio
    import shapely

    _, _, wkb, _ = pyogrio.raw.read(gpkg, layer="water", read_geometry=True, columns=[])
    geoms = shapely.from_wkb(wkb)
    holes = shapely.get_num_interior_rings(geoms)
    return {
        "polygons": int(len(geoms)),
        "invalid": int((~shapely.is_valid(geoms)).sum()),
        "max_holes": int(holes.max()) if len(holes) else 0,
    }


def child(variant: str, mask: Path, out: Path, window: int, old_rev: str) -> dict:
    """Run one variant in this process (in the GDAL environment of a pipeline run); returns its numbers."""
    from samgeo_pipeline.io.gdal_env import gdal_env

    with gdal_env():
        return run_variant(variant, mask, out, window, old_rev)


def run_variant(variant: str, mask: Path, out: Path, window: int, old_rev: str) -> dict:
    """Time one variant; then (untimed) read its GeoPackage back."""
    from rasterio import features

    from samgeo_pipeline.outputs import vectorize

    result: dict = {"variant": variant}
    if variant == "components":
        return count_components(mask)
    if variant == "floor":
        result.update(seconds=0.0, cpu=0.0)
    elif variant in ("bare4", "bare8"):
        with rasterio.open(mask) as ds:
            data = ds.read(1)
        water = data == 1
        del data
        t, c = time.perf_counter(), time.process_time()
        n = 0
        for _ in features.shapes(water.view(np.uint8), mask=water, connectivity=int(variant[-1])):
            n += 1
        result.update(seconds=time.perf_counter() - t, cpu=time.process_time() - c, polygons=n)
    else:
        module = vectorize if variant == "new" else load_old(old_rev)
        merge = time_merges(module, variant)
        gpkg = out / f"{variant}.gpkg"
        kwargs = {"window_size": window or vectorize.WINDOW_SIZE} if variant == "new" else {}
        t, c = time.perf_counter(), time.process_time()
        count, _ = module.write_polygons(mask, gpkg, **kwargs)
        result.update(seconds=time.perf_counter() - t, cpu=time.process_time() - c, returned=count, merge=merge[0])
    result["peak_mib"] = peak_mib()
    if variant in ("new", "old"):
        result.update(read_back(out / f"{variant}.gpkg"))
    return result


def run_child(variant: str, args: argparse.Namespace, mask: Path, out: Path) -> dict:
    """Run ``variant`` in a fresh child process; its JSON result."""
    argv = [sys.executable, __file__, "--child", variant, "--mask", str(mask), "--out", str(out),
            "--window", str(args.window), "--old-rev", args.old_rev]  # fmt: skip
    print(f"  {variant} ...", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        raise SystemExit(f"{variant} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def count_components(mask: Path) -> dict:
    """Water fraction of the valid pixels and the 4- / 8-connected water components (whole mask)."""
    import cv2

    with rasterio.open(mask) as ds:
        data = ds.read(1)
    water = (data == 1).view(np.uint8)
    return {
        "water_fraction": float(water.sum() / (data != 255).sum()),
        "4": cv2.connectedComponents(water, connectivity=4, ltype=cv2.CV_32S)[0] - 1,
        "8": cv2.connectedComponents(water, connectivity=8, ltype=cv2.CV_32S)[0] - 1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="side of the mask (default 8192)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--window", type=int, default=0, help="write_polygons window size, new only (default: its own)")
    parser.add_argument("--old", action="store_true", help="also run write_polygons at --old-rev")
    parser.add_argument("--old-rev", default=OLD_REV, help=f"git revision of the old implementation ({OLD_REV})")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare features.shapes runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mask", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.mask, args.out, args.window, args.old_rev)))
        return 0

    mask = cached_mask(args.size, args.seed)
    variants = ["floor"] + ([] if args.no_bare else ["bare4", "bare8"]) + (["old"] if args.old else []) + ["new"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="samgeo-bench-poly-") as tmp:
        print(f"mask {mask.name}: {args.size}², new window {args.window or 'default'}", flush=True)
        for variant in variants:
            results[variant] = run_child(variant, args, mask, Path(tmp))
        comps = run_child("components", args, mask, Path(tmp))

    base = results.get("bare4")
    floor = results["floor"]["peak_mib"]
    names = {"bare4": "bare features.shapes, 4-conn", "bare8": "bare features.shapes, 8-conn",
             "old": f"write_polygons {args.old_rev} (old)", "new": "write_polygons (new)"}  # fmt: skip
    rows = []
    for variant in variants[1:]:
        r = results[variant]
        ratio = f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"
        cpu_ratio = f"{r['cpu'] / base['cpu']:.2f}x" if base else "-"
        merge = f"{r['merge']:.1f}" if "merge" in r else "-"
        rows.append([
            names[variant], f"{r['seconds']:.1f}", ratio, f"{r['cpu']:.1f}", cpu_ratio, merge, r["polygons"],
            r.get("invalid", "-"), r.get("max_holes", "-"), f"{r['peak_mib']:.0f}",
        ])  # fmt: skip
    print()
    print(f"mask: {args.size}², water {comps['water_fraction']:.1%} of valid pixels, "
          f"{comps['8']:,} 8-connected and {comps['4']:,} 4-connected water components")
    print(f"peak RSS of a child that only imports: {floor:.0f} MiB")
    header = ["variant", "wall s", "x bare4", "CPU s", "CPU x bare4", "merge s", "polygons", "invalid", "max holes",
              "peak RSS MiB"]  # fmt: skip
    print(fmt_table(header, rows))
    if "new" in results:
        new = results["new"]
        ok_count = new["polygons"] == new["returned"] == comps["4"]
        print(f"new: polygons == 4-connected components: {'yes' if ok_count else 'NO'}", end="")
        if base:
            ratio = new["seconds"] / base["seconds"]
            print(f"; {ratio:.2f}x a bare 4-connected features.shapes (target <= {TARGET}x "
                  f"{'met' if ratio <= TARGET else 'MISSED'})")  # fmt: skip
        else:
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
