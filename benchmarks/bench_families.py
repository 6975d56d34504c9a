"""Encoder tiles/s and peak memory of each model family on one device, through the project's predictors.

Each case runs in a fresh process (peak RSS, ``ru_maxrss``, is per process): a model of the family
built from its transformers config with random weights (nothing downloaded; speed does not depend
on the weights), loaded through :func:`samgeo_pipeline.run.batch.load_predictor` from a
``save_pretrained`` folder like any ``--model``, then ``predictor.embed`` on batches of random
``uint8`` tiles of ``--tile`` px (one warm-up batch, then ``--iters`` timed ones). Printed per case:
seconds per tile (median over the timed batches), tiles/s, the ratio to SAM's tiles/s at the same
input size in the same run (ViT-B at 1024 px, the tiny SAM at 256 px), parameters, and the
peak RSS of the process (CPU) or the peak CUDA memory allocated (GPU).

Real-size cases (1024 px input, as released): SAM ViT-B (``SamConfig()``), SAM-HQ ViT-B
(``SamHQConfig()`` with ``vit_dim`` 768), SAM 2.1 Hiera tiny / small / base-plus / large (the
authors' block counts, widths and windows), SAM 3 (``Sam3Config()``: the released facebook/sam3 sizes,
1008 px input; also the seconds per tile to answer one phrase on embedded tiles). ``--tiny`` adds the
tests' tiny models (256 px input).

Usage::

    python benchmarks/bench_families.py                         # CPU, all real-size cases (~6 min on 2 cores)
    python benchmarks/bench_families.py --rounds 2 --iters 2    # fastest of two round-robin rounds (shared CPUs)
    python benchmarks/bench_families.py --cases sam,sam2-tiny --iters 3
    python benchmarks/bench_families.py --device cuda --batch 8 --iters 20   # GPU (gpu_session.sh)
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
sys.path.insert(0, str(ROOT))  # this checkout's samgeo_pipeline and tests, whatever is installed


def _hiera(embed: int, heads: int, blocks: list[int], global_blocks: list[int], background: list[int],
           windows: list[int]) -> dict:  # fmt: skip
    """A SAM 2 config dict with a Hiera backbone of these sizes (neck and decoder as released)."""
    return {
        "vision_config": {
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "hidden_size": embed, "num_attention_heads": heads,
                "blocks_per_stage": blocks, "embed_dim_per_stage": [embed, 2 * embed, 4 * embed, 8 * embed],
                "num_attention_heads_per_stage": [heads, 2 * heads, 4 * heads, 8 * heads],
                "global_attention_blocks": global_blocks, "window_positional_embedding_background_size": background,
                "window_size_per_stage": windows,
            },
            "backbone_channel_list": [8 * embed, 4 * embed, 2 * embed, embed],
        }
    }  # fmt: skip


#: case -> (family, config kwargs); real sizes as released (1024 px input).
CASES: dict[str, tuple[str, dict]] = {
    "sam": ("sam", {}),
    "sam-hq": ("sam_hq", {"mask_decoder_config": {"vit_dim": 768}}),
    "sam2-tiny": ("sam2", _hiera(96, 1, [1, 2, 7, 2], [5, 7, 9], [7, 7], [8, 4, 14, 7])),
    "sam2-small": ("sam2", _hiera(96, 1, [1, 2, 11, 2], [7, 10, 13], [7, 7], [8, 4, 14, 7])),
    "sam2-base-plus": ("sam2", _hiera(112, 2, [2, 3, 16, 3], [12, 16, 20], [14, 14], [8, 4, 14, 7])),
    "sam2-large": ("sam2", _hiera(144, 2, [2, 6, 36, 4], [23, 33, 43], [7, 7], [8, 4, 16, 8])),
    "sam3": ("sam3", {}),  # Sam3Config()'s defaults are the released facebook/sam3 (1008 px, ViT 1024 x 32)
}
TINY = ("tiny-sam", "tiny-sam-hq", "tiny-sam2", "tiny-sam3")


def save_model(case: str, folder: Path) -> None:
    """``save_pretrained`` a random-weight model of ``case`` into ``folder``."""
    import torch

    torch.manual_seed(0)
    if case in TINY:
        from tests.tiny_sam import save_tiny_sam

        save_tiny_sam(folder, 256, 0, case.removeprefix("tiny-").replace("-", "_"))
        return
    import transformers

    from samgeo_pipeline.models.families import FAMILIES

    family, kwargs = CASES[case]
    model_class = FAMILIES[family].load_class()
    config_class = getattr(transformers, model_class.__name__.replace("Model", "Config"))
    model_class(config_class(**kwargs)).save_pretrained(folder)
    if family == "sam3":  # its predictor loads a tokenizer from the folder (any CLIP one times the same)
        from tests.tiny_sam import tiny_clip_tokenizer

        tiny_clip_tokenizer().save_pretrained(folder)


def run_case(case: str, device: str, batch: int, tile: int, iters: int, threads: int, out: str) -> None:
    """One case in this (fresh) process; writes its numbers to ``out``."""
    import numpy as np
    import torch

    from samgeo_pipeline.config import SegmentConfig
    from samgeo_pipeline.run.batch import load_predictor

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(case, Path(tmp) / "model")
        text = {"prompt": "text", "text": "water"} if "sam3" in case else {}  # SAM 3 answers text only
        config = SegmentConfig(model=str(Path(tmp) / "model"), device=device, tile_size=tile, halo=tile // 8,
                               precision="fp32" if device == "cpu" else "auto", **text)  # fmt: skip
        predictor, _ = load_predictor(config)
    tiles = np.random.default_rng(0).integers(0, 256, (batch, tile, tile, 3), dtype=np.uint8)

    def sync() -> None:
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()

    predictor.embed(tiles)  # warm-up
    sync()
    if predictor.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        predictor.embed(tiles)
        sync()
        times.append((time.perf_counter() - t0) / batch)
    seconds = float(np.median(times))  # a shared CPU's bursts of other work hit single batches
    decode = _text_decode_seconds(predictor, tiles, sync) if predictor.family == "sam3" else None
    peak = (torch.cuda.max_memory_allocated() / 2**20 if predictor.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # fmt: skip
    Path(out).write_text(json.dumps({
        "case": case, "family": predictor.family, "input": predictor.image_size, "s_per_tile": seconds,
        "parameters": sum(p.numel() for p in predictor.model.parameters()), "peak_mb": peak,
        "memory": "cuda allocated" if predictor.device.type == "cuda" else "process RSS", "text_s_per_tile": decode,
    }))  # fmt: skip


def _text_decode_seconds(predictor, tiles, sync) -> float:
    """SAM 3: seconds per tile to answer one phrase on embedded tiles (DETR encoder/decoder, mask
    decoder, instances to the tile; the phrase's text encoding is cached after the first call)."""
    embeddings, _ = predictor.embed(tiles)
    predictor.predict_text(embeddings, ["water"], 0.5, tiles.shape[1:3])  # text encoded once
    sync()
    t0 = time.perf_counter()
    predictor.predict_text(embeddings, ["water"], 0.5, tiles.shape[1:3])
    sync()
    return (time.perf_counter() - t0) / len(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join([*CASES, *TINY])}")
    parser.add_argument("--tiny", action="store_true", help="also the tests' tiny models (256 px tiles)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every case this many times, round-robin; keep each one's fastest")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.device, args.batch, args.tile, args.iters, args.threads, args.out)
        return
    cases = [(c, args.tile) for c in args.cases.split(",")] + ([(c, 256) for c in TINY] if args.tiny else [])
    fastest: dict[str, dict] = {}
    for case, tile in cases * args.rounds:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--case", case, "--out", out.name, "--device", args.device,
                       "--batch", str(args.batch), "--tile", str(tile), "--iters", str(args.iters),
                       "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{case}: failed: {done.stderr.strip().splitlines()[-1]}", flush=True)
                continue
            r = json.loads(Path(out.name).read_text())
            text = f", text decode {r['text_s_per_tile']:.3f} s/tile" if r.get("text_s_per_tile") else ""
            print(f"{case}: {r['s_per_tile']:.3f} s/tile{text}, peak {r['peak_mb']:.0f} MiB", flush=True)
            if case not in fastest or r["s_per_tile"] < fastest[case]["s_per_tile"]:
                fastest[case] = r
    results = list(fastest.values())
    base = {r["case"] in TINY: r["s_per_tile"] for r in results if r["case"] in ("sam", "tiny-sam")}  # per tile size
    print(f"\ndevice {args.device}, batch {args.batch}, {args.threads} threads, {args.iters} timed batches per case, "
          f"fastest of {args.rounds} round(s)\n")
    print("| case | family | input px | parameters | s / tile | tiles/s | speed vs SAM (same tiles) | peak memory "
          "| SAM 3: one phrase, s / tile |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        group = r["case"] in TINY
        ratio = f"{base[group] / r['s_per_tile']:.2f}x" if group in base else "–"
        text = f"{r['text_s_per_tile']:.3f}" if r.get("text_s_per_tile") else "–"
        print(f"| {r['case']} | {r['family']} | {r['input']} | {r['parameters'] / 1e6:.1f} M | {r['s_per_tile']:.3f} | "
              f"{1 / r['s_per_tile']:.2f} | {ratio} | {r['peak_mb']:.0f} MiB ({r['memory']}) | {text} |")  # fmt: skip


if __name__ == "__main__":
    main()
