"""Fine-tuning speed: epoch time with the image-embedding cache vs without.

CPU mode (default): a ViT-B-size SAM with random weights (speed does not depend on the weights),
a few synthetic 1024² images, a few epochs with ``cache=memory`` and with ``cache=off``. Target:
>= 10x faster per epoch after the first with the cache (the frozen encoder runs once per image,
in the preparation pass, instead of at every step).

GPU mode (``--mode gpu``; skipped with status 0 without CUDA): ``--epochs`` (50) x ``--images``
(1,000) images of 1024², bf16 mixed precision, cache on the GPU: preparation (encoder) time, mean
epoch time, total. Target: under 10 minutes on one H100 (the seed: ~12 hours on a T4). One
epoch without the cache is timed too, for the speed-up.

Nothing is downloaded; the model is ``SamModel(SamConfig())`` saved to a temp dir. Usage::

    python benchmarks/bench_finetune.py                      # CPU: 3 images, 3 epochs
    python benchmarks/bench_finetune.py --mode gpu --images 1000 --epochs 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.sources import Sample, SampleSource
from samgeo_pipeline.finetune.train import finetune


class SyntheticSource(SampleSource):
    """``n`` RGB images of ``size``² with a lake and a river, generated on demand (deterministic)."""

    def __init__(self, n: int, size: int = 1024) -> None:
        self.size = size
        self.names = [f"synthetic_{i:05d}" for i in range(n)]
        self.band_names = ("red", "green", "blue")
        self.composite = ("red", "green", "blue")
        self.description = f"{n} synthetic {size}² images"

    def load(self, index: int) -> Sample:
        rng = np.random.default_rng(index)
        s = self.size
        rows, cols = np.ogrid[0:s, 0:s]
        cy, cx = rng.uniform(0.25, 0.75, 2) * s
        r = rng.uniform(0.08, 0.2) * s
        water = (rows - cy) ** 2 + (cols - cx) ** 2 < r**2
        water |= np.abs(rows - (0.2 * s + 0.1 * s * np.sin(cols / s * 6 + index))) < 0.03 * s
        land, wet = np.array([95, 110, 80], np.float32), np.array([60, 80, 95], np.float32)
        rgb = np.where(water[..., None], wet, land) + rng.normal(0, 6, (s, s, 3)).astype(np.float32)
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        valid = np.ones((s, s), bool)
        return Sample(self.names[index], rgb, water, valid, water)


def run_case(
    model_dir: Path, out: Path, source: SampleSource, cache: str, epochs: int, device: str, batch: int, workers: int
) -> dict:
    config = FinetuneConfig(model=str(model_dir), out=str(out), epochs=epochs, batch_size=batch, lr=1e-5, cache=cache,
                            device=device, progress=False, workers=workers)  # fmt: skip
    t0 = time.perf_counter()
    result = finetune(config, train_source=source, val_source=None, log=None)
    return {
        "cache": cache,
        "prepare_s": result.seconds["prepare"],
        "epoch_train_s": [h["train_seconds"] for h in result.history],
        "epoch_total_s": [h["seconds"] for h in result.history],
        "total_s": time.perf_counter() - t0,
        "train_loss": [h["train_loss"] for h in result.history],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--images", type=int, default=None, help="images (cpu: 3, gpu: 1000)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (cpu: 3, gpu: 50)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (cpu: 3, gpu: 16)")
    parser.add_argument("--workers", type=int, default=None, help="data-loader workers (cpu: 0, gpu: 12)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    gpu = args.mode == "gpu"
    if gpu and not torch.cuda.is_available():
        print("bench_finetune --mode gpu: no CUDA device here; nothing to measure")
        return 0
    images = args.images or (1000 if gpu else 3)
    epochs = args.epochs or (50 if gpu else 3)
    batch = args.batch_size or (16 if gpu else 3)
    workers = args.workers if args.workers is not None else (12 if gpu else 0)
    device = "cuda" if gpu else "cpu"
    from transformers import SamConfig, SamModel

    results: dict = {"mode": args.mode, "images": images, "epochs": epochs, "batch_size": batch,
                     "device": torch.cuda.get_device_name() if gpu else "cpu",
                     "torch_threads": torch.get_num_threads()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        SamModel(SamConfig()).save_pretrained(Path(tmp) / "vit_b")  # ViT-B size, random weights
        source = SyntheticSource(images)
        cached = run_case(Path(tmp) / "vit_b", Path(tmp) / "cached", source, "memory", epochs, device, batch, workers)
        results["cached"] = cached
        print(f"cache=memory: prepare (encoder) {cached['prepare_s']:.1f} s, epochs "
              + ", ".join(f"{s:.2f}" for s in cached["epoch_train_s"]) + " s", flush=True)  # fmt: skip
        plain = run_case(Path(tmp) / "vit_b", Path(tmp) / "plain", source, "off", 1 if gpu else epochs, device, batch, workers)
        results["uncached"] = plain
        print(f"cache=off:    prepare {plain['prepare_s']:.1f} s, epochs "
              + ", ".join(f"{s:.2f}" for s in plain["epoch_train_s"]) + " s", flush=True)  # fmt: skip
    per_epoch_cached = float(np.mean(cached["epoch_train_s"]))
    per_epoch_plain = float(np.mean(plain["epoch_train_s"]))
    results["speedup_per_epoch"] = per_epoch_plain / per_epoch_cached
    results["first_epoch_cached_s"] = cached["prepare_s"] + cached["epoch_train_s"][0]
    print(f"per epoch after the first: {per_epoch_cached:.2f} s cached vs {per_epoch_plain:.2f} s uncached "
          f"-> {results['speedup_per_epoch']:.1f}x (target >= 10x)")  # fmt: skip
    if gpu:
        total = cached["prepare_s"] + sum(cached["epoch_total_s"])
        results["gpu_total_s"] = total
        print(f"{epochs} epochs x {images} images of 1024²: {total / 60:.1f} min (target < 10 min on one H100)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
