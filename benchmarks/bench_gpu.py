"""GPU throughput of SAM's ViT-B image encoder at 1024² over batch sizes (tiles/s), and of the whole
pipeline on a synthetic raster. Target: >= 450 tiles/s for the encoder on one H100 (bf16).

Without a CUDA device it prints why and exits with status 0 (nothing to measure; not an error).

The model is ``SamModel(SamConfig())`` (ViT-B size, random weights: speed does not depend on the
weights), saved to a temp dir so the pipeline loads it like a local model; nothing is downloaded.
Encoder timing: ``model.get_image_embeddings`` on ``(batch, 3, 1024, 1024)`` inputs already on the
GPU, after warm-up iterations, timed with CUDA events for at least ``--seconds`` per batch size.
Pipeline timing: :func:`segment_raster` on a synthetic 4-band scene with lakes in every tile (so
every tile goes to SAM), default tiling; tiles/s = SAM tiles / tile-stage seconds. The tile reader's
own rate (reading, coarse mask, prompts on the CPU, no model) is printed beside it, since it bounds
the pipeline.

Options to try (each behind a flag, all off by default so the baseline is what the pipeline does):

* ``--bf16-weights``: cast the model to bf16 instead of autocast (no per-op casts);
* ``--compile``: ``torch.compile`` the vision encoder (``--compile-mode`` max-autotune etc.);
* ``--channels-last``: channels-last memory format for the convolutions and the input;
* ``--attn eager``: transformers' eager attention instead of SDPA (the default), for comparison.

Usage::

    python benchmarks/bench_gpu.py                              # autocast bf16, SDPA, batch 1..32
    python benchmarks/bench_gpu.py --bf16-weights --compile     # the fast variants
    python benchmarks/bench_gpu.py --pipeline-size 0            # encoder only
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from _common import cached_scene

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.io.raster import inspect_raster
from samgeo_pipeline.io.tiling import make_grid
from samgeo_pipeline.run import image as pipeline
from samgeo_pipeline.run import prepare as reader
from samgeo_pipeline.run.batch import load_predictor
from samgeo_pipeline.sam.weights import weight_files
from samgeo_pipeline.water.radiometry import compute_stats

TARGET_TILES_PER_S = 450.0
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def no_gpu_message() -> str:
    """Why nothing is measured on this machine."""
    build = torch.version.cuda or "a CPU-only build"
    return (
        "bench_gpu: no CUDA device here (torch.cuda.is_available() is False; torch "
        f"{torch.__version__}, CUDA {build}). Nothing measured. Run it on a machine with an NVIDIA "
        "GPU and a CUDA build of torch (scripts/install.sh with TORCH_SPEC set)."
    )


def build_model_dir(path: Path) -> Path:
    """Save a ViT-B-size SAM with random weights (seed 0) to ``path``."""
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    SamModel(SamConfig()).save_pretrained(path)
    return path


def load_encoder_model(model_dir: Path, args: argparse.Namespace) -> torch.nn.Module:
    """The SAM model on ``args.device`` with the options of ``args`` applied."""
    from transformers import SamModel

    weight_files(model_dir)  # .safetensors inside the folder only, as segment loads them
    model = SamModel.from_pretrained(model_dir, attn_implementation=args.attn, use_safetensors=True)
    model = model.to(args.device).eval()
    if args.bf16_weights:
        model = model.to(torch.bfloat16)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
        model.vision_encoder = torch.compile(model.vision_encoder, mode=args.compile_mode, dynamic=False)
    return model


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def encoder_tiles_per_s(model: torch.nn.Module, batch: int, args: argparse.Namespace) -> tuple[float, float]:
    """``(tiles/s, peak GiB)`` of ``get_image_embeddings`` at ``batch`` tiles of 1024²."""
    dtype = DTYPES[args.dtype]
    cuda = args.device.startswith("cuda")
    x = torch.randn(batch, 3, 1024, 1024, device=args.device)
    if args.bf16_weights:
        x = x.to(torch.bfloat16)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    use_autocast = dtype is not None and not args.bf16_weights
    autocast = torch.autocast(x.device.type, dtype=dtype) if use_autocast else contextlib.nullcontext()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with autocast:
        for _ in range(args.warmup):
            model.get_image_embeddings(x)
        synchronize(args.device)
        iters, t0 = 0, time.perf_counter()
        while iters < args.min_iters or time.perf_counter() - t0 < args.seconds:
            model.get_image_embeddings(x)
            iters += 1
            if iters % 5 == 0:  # keep the host at most 5 batches ahead, so the clock means something
                synchronize(args.device)
        synchronize(args.device)
        elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return batch * iters / elapsed, peak


def pipeline_tiles_per_s(
    model_dir: Path, size: int, batch: int, precision: str, device: str, work: Path
) -> dict[str, float]:
    """Run the pipeline on a ``size``² lakes scene with SAM on ``device``; rates and stage seconds."""
    raster = cached_scene(f"lakes_{size}.tif", size, size, pattern="lakes")
    config = SegmentConfig(model=str(model_dir), device=device, precision=precision, batch_size=batch,
                           overwrite=True, progress=False)
    predictor, source = load_predictor(config)
    assert predictor is not None
    # The reader alone (CPU: read, coarse mask, prompts), as the pipeline runs it, without the model.
    info = inspect_raster(raster, config.bands, config.nodata)
    with rasterio.open(raster) as ds:
        stats = compute_stats(ds, info, config)
    grid = make_grid(info, config)
    t = time.perf_counter()
    for _ in reader.prepared_tiles(info, stats, grid, config):
        pass
    reader_rate = len(grid) / (time.perf_counter() - t)
    predictor.embed(np.zeros((batch, config.tile_size, config.tile_size, 3), np.uint8))  # kernel warm-up
    synchronize(device)
    result = pipeline.segment_raster(raster, work / "run", config, predictor, source)
    out = {"tiles": float(result.tiles.sam), "sam_tiles_per_s": result.tiles.sam / result.seconds["tiles"],
           "reader_tiles_per_s": reader_rate}
    out.update({f"s_{k}": v for k, v in result.seconds.items()})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32", help="comma-separated (default 1,2,4,8,16,32)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16", help="autocast dtype (default bf16)")
    parser.add_argument("--bf16-weights", action="store_true", help="cast the model to bf16 instead of autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the vision encoder")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode (default, max-autotune, ...)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last model and input")
    parser.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="attention implementation")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per batch size (default 3)")
    parser.add_argument("--min-iters", type=int, default=5, help="timed iterations at least (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds at least per batch size")
    parser.add_argument("--pipeline-size", type=int, default=8192,
                        help="side of the pipeline's synthetic raster (default 8192; 0 skips the pipeline)")
    parser.add_argument("--pipeline-batch", type=int, default=16, help="pipeline encoder batch size (default 16)")
    parser.add_argument("--device", default="cuda",
                        help="torch device (default cuda; cpu only smoke-tests this script's code paths)")
    args = parser.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(no_gpu_message())
        return 0
    if args.bf16_weights and args.dtype != "bf16":
        parser.error("--bf16-weights goes with --dtype bf16")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="samgeo-bench-gpu-"))
    try:
        model_dir = build_model_dir(work / "sam-vit-b-random")
        model = load_encoder_model(model_dir, args)
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
        precision = "bf16 weights" if args.bf16_weights else "fp32" if args.dtype == "fp32" else f"autocast {args.dtype}"
        options = [precision, f"attn {args.attn}"]
        options += ["torch.compile " + args.compile_mode] * args.compile + ["channels_last"] * args.channels_last
        print(f"{name}; torch {torch.__version__}; ViT-B SAM encoder at 1024²; {', '.join(options)}", flush=True)
        print(f"{'batch':>5}  {'tiles/s':>8}  {'ms/batch':>8}  {'peak GiB':>8}", flush=True)
        best = 0.0
        for b in batch_sizes:
            try:
                rate, peak = encoder_tiles_per_s(model, b, args)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                print(f"{b:>5}  {'OOM':>8}", flush=True)
                continue
            best = max(best, rate)
            print(f"{b:>5}  {rate:8.1f}  {1e3 * b / rate:8.1f}  {peak:8.2f}", flush=True)
        verdict = "meets" if best >= TARGET_TILES_PER_S else "MISSES"
        print(f"best encoder throughput: {best:.1f} tiles/s (target >= {TARGET_TILES_PER_S:.0f} on an H100: "
              f"{verdict}; this GPU: {name})")
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

        if args.pipeline_size:
            r = pipeline_tiles_per_s(model_dir, args.pipeline_size, args.pipeline_batch, args.dtype, args.device, work)
            stages = ", ".join(f"{k[2:]} {v:.1f}" for k, v in r.items() if k.startswith("s_"))
            print(f"pipeline, {args.pipeline_size}² lakes scene, {int(r['tiles'])} SAM tiles, batch "
                  f"{args.pipeline_batch}, precision {args.dtype}: {r['sam_tiles_per_s']:.1f} tiles/s in the tile "
                  f"stage; the CPU tile reader alone: {r['reader_tiles_per_s']:.1f} tiles/s")
            print(f"pipeline seconds per stage: {stages}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
