"""Cost of the coarse mask per 1024² tile, for each method (CPU ms, one thread, best of ``--repeat``).

``apply_rule`` on one tile of real imagery from ``../shared/data`` (the Havel Sentinel-2 scene,
its bands tiled to 1024²), in the file's dtype as the pipeline passes it, with the prompt pools
(as when SAM runs) and without (``--model none``). The rule is fitted once on the tile itself.
Methods: ``dswe`` with reflectance (Sentinel-2's quantification value) and without (scale-free
tests 1-3), ``mndwi``, ``ndwi`` on the same uint16 bands, ``ndwi`` on uint8 bands (the table
lookup NAIP takes), ``fmask`` (red, NIR, SWIR1) and ``rgb``.

Usage::

    python benchmarks/bench_coarse.py [--data ../shared/data] [--repeat 7]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rasterio

from samgeo_pipeline.io.reflectance import Reflectance
from samgeo_pipeline.water.coarse import apply_rule, fit_rule

HAVEL = "sentinel2_havel_winter/s2l1c_T33UUU_20170216_13band_10m.tif"
#: 1-based bands of the Havel file.
BANDS = {"blue": 2, "green": 3, "red": 4, "nir": 8, "swir": 12, "swir2": 13}
S2 = Reflectance(1e-4, 0.0, "Sentinel-2 quantification value 10000")


def tile_of(path: Path, names: tuple[str, ...], size: int = 1024) -> np.ndarray:
    """``uint16 (bands, size, size)``: the named bands, the scene repeated to fill the tile."""
    with rasterio.open(path) as ds:
        data = ds.read([BANDS[n] for n in names])
    reps = (1, -(-size // data.shape[1]), -(-size // data.shape[2]))
    return np.ascontiguousarray(np.tile(data, reps)[:, :size, :size])


def best_ms(tile: np.ndarray, rule, pools: bool, repeat: int) -> float:
    valid = np.ones(tile.shape[1:], bool)
    apply_rule(tile, valid, rule, 64, pools=pools)  # warm the lookup tables
    times = []
    for _ in range(repeat):
        t = time.process_time()
        apply_rule(tile, valid, rule, 64, pools=pools)
        times.append(time.process_time() - t)
    return 1000 * min(times)


def cases(path: Path) -> list[tuple[str, np.ndarray, tuple[str, ...], dict]]:
    six = ("blue", "green", "red", "nir", "swir", "swir2")
    full = tile_of(path, six)
    rgbn = full[[2, 1, 0, 3]]
    to8 = np.clip(rgbn / 12, 0, 255).astype(np.uint8)
    return [
        ("dswe, reflectance known", full, six, {"reflectance": S2}),
        ("dswe, reflectance unknown (tests 1-3)", full, six, {}),
        ("mndwi (uint16)", full[[1, 3, 4]], ("green", "nir", "swir"), {}),
        ("ndwi (uint16)", rgbn, ("red", "green", "blue", "nir"), {}),
        ("ndwi (uint8, table lookup)", to8, ("red", "green", "blue", "nir"), {}),
        ("fmask (red, NIR, SWIR1)", full[[2, 3, 4]], ("red", "nir", "swir"), {"reflectance": S2}),
        ("rgb", full[[2, 1, 0]], ("red", "green", "blue"), {"rgb_max_water": 1.0}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    path = args.data / HAVEL
    if not path.is_file():
        print(f"{path} not found: nothing to measure")
        return 0
    print(f"{'method':40s} {'no pools':>10s} {'pools':>10s}   (CPU ms per 1024² tile, best of {args.repeat})")
    for name, tile, names, fit in cases(path):
        rule = fit_rule(tile.astype(np.float32), np.ones(tile.shape[1:], bool), names, **fit)
        plain, pooled = (best_ms(tile, rule, pools, args.repeat) for pools in (False, True))
        print(f"{name:40s} {plain:10.1f} {pooled:10.1f}   ({rule.method})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
