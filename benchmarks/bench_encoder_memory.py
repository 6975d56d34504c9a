"""Peak memory of SAM's ViT-B encoder on CPU: transformers' dense global attention vs query chunks.

transformers' SAM encoder builds a dense ``(batch, 12, 4096, 4096)`` float32 relative-position
bias in each of ViT-B's 4 global-attention layers (805 MB per image).
:func:`samgeo_pipeline.sam.attention.chunk_global_attention` attends ``--rows`` of the 64 token rows
at a time instead. Each case runs in a fresh process (peak RSS, ``ru_maxrss``, is per process):
a random-weight ViT-B-size ``SamModel(SamConfig())`` (vision weights N(0, 0.02²); nothing downloaded), one forward of
``get_image_embeddings`` on ``batch`` random 1024² inputs under ``inference_mode``. Printed per
case: resident memory after building the model, peak during the forward, the forward's extra
peak over the model, and seconds. The embeddings of the chunked runs are compared with the dense
run of the same batch (max abs difference, relative to the largest value).

A ViT-B forward takes ~19 s per image on a 2-core CPU; the default (batch 1 and 2, dense and
chunked) runs in about 3 minutes.

Usage::

    python benchmarks/bench_encoder_memory.py                 # batches 1,2; dense and 8-row chunks
    python benchmarks/bench_encoder_memory.py --batches 1 --rows 4,16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_case(batch: int, rows: int, threads: int, out: str) -> None:
    """One case in this (fresh) process; writes its numbers and embeddings to ``out``."""
    import torch
    from transformers import SamConfig, SamModel

    from samgeo_pipeline.sam.attention import chunk_global_attention

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    # transformers' default vision init (1e-10) gives ~0 embeddings; 0.02 makes the comparison mean something
    model = SamModel(SamConfig(vision_config={"initializer_range": 0.02})).eval()
    if rows:
        chunk_global_attention(model, rows)
    pixels = torch.randn(batch, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    model_mb = _rss_mb()
    t0 = time.perf_counter()
    with torch.inference_mode():
        embeddings = model.get_image_embeddings(pixels)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.save(embeddings, out + ".pt")
    Path(out).write_text(json.dumps({"model_mb": model_mb, "peak_mb": peak_mb, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,2", help="batch sizes (comma-separated)")
    parser.add_argument("--rows", default="8", help="token rows per chunk to compare with dense (comma-separated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", nargs=4, metavar=("BATCH", "ROWS", "THREADS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(int(args.case[0]), int(args.case[1]), int(args.case[2]), args.case[3])
        return
    import torch

    print(f"{'batch':>5} {'attention':>14} {'model MB':>9} {'peak MB':>8} {'forward MB':>10} {'s':>6} {'max diff':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in [int(b) for b in args.batches.split(",")]:
            dense = None
            for rows in [0] + [int(r) for r in args.rows.split(",")]:
                out = f"{tmp}/b{batch}r{rows}.json"
                subprocess.run([sys.executable, __file__, "--case", str(batch), str(rows), str(args.threads), out],
                               check=True, cwd=ROOT)  # fmt: skip
                numbers = json.loads(Path(out).read_text())
                embeddings = torch.load(out + ".pt")
                if dense is None:
                    dense, diff = embeddings, 0.0
                else:
                    diff = float((embeddings - dense).abs().max() / dense.abs().max())
                name = "dense" if rows == 0 else f"{rows}-row chunks"
                extra = numbers["peak_mb"] - numbers["model_mb"]
                print(f"{batch:>5} {name:>14} {numbers['model_mb']:>9.0f} {numbers['peak_mb']:>8.0f} {extra:>10.0f} "
                      f"{numbers['seconds']:>6.1f} {diff:>9.1e}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
