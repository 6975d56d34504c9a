"""SAM overhead of the pipeline on CPU: seconds per SAM tile vs the bare encoder (target <= 1.15x),
and the cost of a skipped tile vs a SAM tile (target < 5 %).

The model is a ViT-B-size SAM with random weights (``SamModel(SamConfig())``: the defaults are
ViT-B, 94 M parameters), saved with ``save_pretrained`` under ``benchmarks/.cache`` once; nothing is
downloaded. Inputs are synthetic 4-band scenes written by windows:

* a row of ``--tiles`` 1024² tiles, each with four lakes (coarse water, so every tile goes to SAM
  with four component prompts); the grid uses ``halo=0`` so each tile is exactly one 1024² input;
* a 4x4 grid of land-only 1024² tiles (valid data, no coarse water: every tile skips SAM).

Measured in this process, with ``torch.set_num_threads(--threads)`` for everything:

* bare encoder: ``model.get_image_embeddings`` on the same tiles, preprocessed beforehand;
* pipeline: :func:`segment_raster` (model loaded once outside the timing), its tile stage
  (reading, coarse mask, prompts, encoder, decoder, writing) divided by the SAM tiles;
* skipped tile: the tile stage of the land-only raster divided by its tiles.

One untimed encoder pass warms the model up first. The ViT-B encoder takes ~19 s per 1024² tile on
a 2-core CPU: the default (4 tiles, batch size 1) runs in about 3 minutes; ``--batch-sizes 1,2``
adds as much again.

Usage::

    python benchmarks/bench_sam_overhead.py                       # 4 tiles, batch size 1
    python benchmarks/bench_sam_overhead.py --tiles 2 --batch-sizes 1,2
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from _common import CACHE_DIR, cached_scene, fmt_table

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.run import image as pipeline
from samgeo_pipeline.run import prepare as reader
from samgeo_pipeline.sam.predictor import SamPredictor, load_sam_model, preprocess_torch
from samgeo_pipeline.water.radiometry import compute_stats

TARGET_OVERHEAD = 1.15
TARGET_SKIP = 0.05
MODEL_DIR = CACHE_DIR / "sam-vit-b-random"


def random_vit_b(path: Path) -> Path:
    """Save a ViT-B-size SAM with random weights (seed 0) to ``path`` once; return ``path``."""
    if (path / "config.json").is_file():
        return path
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    t = time.perf_counter()
    model = SamModel(SamConfig()).eval()
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tmp.rename(path)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"saved a random ViT-B SAM ({n:.0f} M parameters) to {path} in {time.perf_counter() - t:.1f} s")
    return path


def prepared_pixel_values(path: Path, config: SegmentConfig, image_size: int) -> tuple[torch.Tensor, int]:
    """The pipeline's own SAM inputs for every tile of ``path``: ``float32 (n, 3, S, S)``, and how
    many of the tiles have prompts (would go to SAM)."""
    info = inspect_raster(path, config.bands, config.nodata)
    rgbs, with_prompts = [], 0
    with rasterio.open(path) as ds:
        stats = compute_stats(ds, info, config)
        for tile in make_grid(info, config):
            prepared = reader.prepare_tile(ds, info, stats, tile, config)
            rgbs.append(prepared.rgb)
            with_prompts += bool(prepared.prompts)
    pixel_values, _ = preprocess_torch(torch.from_numpy(np.stack(rgbs)), image_size)
    return pixel_values, with_prompts


@torch.inference_mode()
def bare_encoder_seconds(model: torch.nn.Module, pixel_values: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """``(wall, CPU)`` seconds of ``get_image_embeddings`` over ``pixel_values`` in batches of ``batch_size``."""
    t, c = time.perf_counter(), time.process_time()
    for i in range(0, len(pixel_values), batch_size):
        model.get_image_embeddings(pixel_values[i : i + batch_size])
    return time.perf_counter() - t, time.process_time() - c


def load() -> str:
    """The 1-minute load average, to flag runs that shared the CPU with other work."""
    return f"{os.getloadavg()[0]:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4, help="SAM tiles (1024² each, default 4)")
    parser.add_argument("--batch-sizes", default="1", help="comma-separated encoder batch sizes (default 1)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help=f"torch.set_num_threads for all measurements (default {torch.get_num_threads()})")
    parser.add_argument("--skip-tiles-side", type=int, default=4, help="land-only raster is N x N tiles (default 4)")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    model_dir = random_vit_b(MODEL_DIR)
    sam_raster = cached_scene(f"lakes_1024x{1024 * args.tiles}.tif", 1024, 1024 * args.tiles, pattern="lakes")
    side = 1024 * args.skip_tiles_side
    skip_raster = cached_scene(f"land_{side}.tif", side, side, pattern="land")

    model, source = load_sam_model(str(model_dir))
    predictor = SamPredictor(model, torch.device("cpu"), None)
    base = SegmentConfig(model=str(model_dir), tile_size=1024, halo=0, device="cpu", precision="fp32",
                         overwrite=True, progress=False)
    pixel_values, with_prompts = prepared_pixel_values(sam_raster, base, predictor.image_size)
    if with_prompts != args.tiles:
        print(f"expected {args.tiles} tiles with prompts, got {with_prompts}", file=sys.stderr)
        return 1

    warm, _ = bare_encoder_seconds(model, pixel_values[:1], 1)  # warm-up, untimed
    print(f"warm-up encoder pass: {warm:.1f} s ({args.threads} torch threads, load {load()})", flush=True)

    out_root = Path(tempfile.mkdtemp(prefix="samgeo-bench-sam-"))
    rows, per_sam_tile = [], {}
    try:
        for b in batch_sizes:
            bare, bare_cpu = (v / args.tiles for v in bare_encoder_seconds(model, pixel_values, b))
            config = base.merged({"batch_size": b})
            cpu = time.process_time()
            result = pipeline.segment_raster(sam_raster, out_root / f"sam_b{b}", config, predictor, source)
            cpu = (time.process_time() - cpu) / args.tiles
            if result.tiles.sam != args.tiles:
                print(f"pipeline sent {result.tiles.sam} tiles to SAM, expected {args.tiles}", file=sys.stderr)
                return 1
            tile_stage = result.seconds["tiles"] / result.tiles.sam
            whole = result.seconds["total"] / result.tiles.sam
            per_sam_tile[b] = tile_stage
            rows.append([b, f"{bare:.2f}", f"{tile_stage:.2f}", f"{tile_stage / bare:.3f}", f"{whole:.2f}",
                         f"{bare_cpu:.2f}", f"{cpu:.2f}", f"{cpu / bare_cpu:.3f}"])
            print(f"batch {b}: encoder {bare:.2f} s/tile, pipeline tile stage {tile_stage:.2f} s/tile "
                  f"(load {load()})", flush=True)

        skip_result = pipeline.segment_raster(skip_raster, out_root / "skip", base, predictor, source)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    n_skip = skip_result.tiles.skipped
    if n_skip != args.skip_tiles_side**2 or skip_result.tiles.sam:
        print(f"land-only raster: {n_skip} skipped, {skip_result.tiles.sam} SAM tiles; expected all skipped",
              file=sys.stderr)
        return 1
    per_skip = skip_result.seconds["tiles"] / n_skip
    reference = per_sam_tile[batch_sizes[0]]

    print()
    print(f"ViT-B SAM, random weights, CPU fp32, {args.threads} torch threads, {args.tiles} tiles of 1024² "
          "(4 lake prompts each)")
    print("wall seconds per tile: encoder, pipeline tile stage, ratio, pipeline whole run; CPU seconds per tile "
          "(all threads): encoder, pipeline whole run, ratio")
    print(fmt_table(["batch", "encoder", "pipeline tiles", "ratio", "whole run", "encoder CPU", "whole run CPU",
                     "CPU ratio"], rows))
    for row in rows:
        ratio = float(row[3])
        print(f"batch {row[0]}: pipeline / bare encoder = {ratio:.3f}x  "
              f"(target <= {TARGET_OVERHEAD}x: {'meets' if ratio <= TARGET_OVERHEAD else 'MISSES'}); "
              f"CPU-time ratio {row[7]}x")
    share = per_skip / reference
    print(f"skipped tile: {1e3 * per_skip:.0f} ms ({n_skip} land-only tiles) = {100 * share:.2f} % of a SAM tile "
          f"(batch {batch_sizes[0]})  (target < {100 * TARGET_SKIP:.0f} %: {'meets' if share < TARGET_SKIP else 'MISSES'})")
    print(f"benchmark wall time: {time.perf_counter() - t_start:.0f} s; load average now {load()} "
          f"(> {args.threads} means other work shared the CPU and the wall ratios are noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
