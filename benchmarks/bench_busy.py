"""Keeping one device busy over a batch of images (issue 8 item 6 without a GPU).

A batch of ``--images`` copies of the cached 8192² NAIP-like scene goes through
:func:`samgeo_pipeline.run.batch.segment_many` (what ``samgeo-pipeline segment`` runs) with SAM
replaced by a device stand-in: ``embed`` waits ``1 / rate`` seconds per tile without using the CPU
(``time.sleep`` releases the GIL, as a thread waiting for a GPU does), and the decoder returns the
tile's coarse mask at once (:class:`bench_feed.StubPredictor`). Everything else is the library's
own work on this machine's CPUs: statistics, reading, coarse mask and prompts, writing the cores,
COG, polygons, quicklook, manifest.

Printed per device rate: the batch's wall seconds, the seconds the device was busy, and the SAM
tiles/s of the whole pipeline as a fraction of the device's own rate (target: >= 0.8x). Pick rates
the CPUs can feed (``bench_feed.py``: cores x 1000 / core-ms per SAM tile; ~60 tiles/s on 2 cores),
or the device waits for the CPU whatever the pipeline's structure. ``--before DIR`` measures a
second copy of the library side by side (child processes with ``PYTHONPATH=DIR``, alternated).

    python benchmarks/bench_busy.py [--images 6] [--rates 25,40] [--before /tmp/busy_before]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TARGET = 0.8


def device_stand_in(stub: Any, tiles_per_s: float) -> Any:
    """``stub`` whose ``embed`` takes ``1 / tiles_per_s`` seconds per tile of wall time and no CPU."""
    embed = type(stub).embed.__get__(stub)  # the stand-in's own, however often it was wrapped before
    lock = threading.Lock()
    stub.busy = 0.0

    def waiting_embed(tiles):
        start = time.perf_counter()
        time.sleep(len(tiles) / tiles_per_s)
        with lock:
            stub.busy += time.perf_counter() - start
        return embed(tiles)

    stub.embed = waiting_embed
    return stub


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The batch at each rate, for the library this process imports."""
    import samgeo_pipeline
    import samgeo_pipeline.run.batch as runner
    from samgeo_pipeline.config import SegmentConfig

    sys.path.insert(0, str(BENCH_DIR))
    from _common import cached_scene
    from bench_feed import build_stub

    scene = cached_scene("scene_8192_deflate.tif", 8192, 8192, compress="deflate")
    config = SegmentConfig(model="facebook/sam-vit-base", device="cpu", overwrite=True, progress=False)
    stub, sam_per_image = build_stub(scene, config)
    work = Path(tempfile.mkdtemp(prefix="samgeo-bench-busy-"))
    inputs = []
    for i in range(args.images):  # links: same pixels, one output folder each
        link = work / f"scene{i}.tif"
        link.symlink_to(scene)
        inputs.append(link)
    out: dict[str, Any] = {"library": str(Path(samgeo_pipeline.__file__).resolve().parent),
                           "sam_per_image": sam_per_image, "images": args.images, "runs": {}}
    real_load = runner.load_predictor
    try:
        for rate in args.rates:
            runs = []
            for _ in range(args.repeat):
                predictor = device_stand_in(stub, rate)
                runner.load_predictor = lambda config, p=predictor: (p, None)
                out_root = work / "out"
                shutil.rmtree(out_root, ignore_errors=True)
                start = time.perf_counter()
                results = runner.segment_many(inputs, [out_root / p.stem for p in inputs], config, log=lambda m: None)
                wall = time.perf_counter() - start
                assert [r.status for r in results] == ["done"] * args.images, [r.error for r in results]
                masks = {hashlib.sha256((r.out_dir / "mask.tif").read_bytes()).hexdigest()[:16] for r in results}
                runs.append({"wall": wall, "busy": predictor.busy, "sam": sum(r.tiles.sam for r in results),
                             "masks": sorted(masks)})
            out["runs"][str(rate)] = runs
    finally:
        runner.load_predictor = real_load
        shutil.rmtree(work, ignore_errors=True)
    return out


def child(args: argparse.Namespace, library: Path | None) -> dict[str, Any]:
    """Measure in a child process whose ``PYTHONPATH`` puts ``library`` (None: this checkout) first."""
    env = dict(os.environ, PYTHONPATH=str(library or REPO))
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        json_path = Path(f.name)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-json", str(json_path), "--images",
            str(args.images), "--rates", ",".join(map(str, args.rates)), "--repeat", str(args.repeat)]
    try:
        subprocess.run(argv, env=env, check=True)
        return json.loads(json_path.read_text())
    finally:
        json_path.unlink(missing_ok=True)


def report(measurements: list[dict[str, Any]], labels: list[str], rates: list[float]) -> None:
    from _common import fmt_table

    rows = []
    for rate in rates:
        best = [min(m["runs"][str(rate)], key=lambda r: r["wall"]) for m in measurements]
        rows.append([f"device at {rate:g} tiles/s: batch wall s (device busy s)",
                     *[f"{b['wall']:.2f} ({b['busy']:.2f})" for b in best]])
        rows.append([f"device at {rate:g} tiles/s: pipeline SAM tiles/s, share of the device's rate",
                     *[f"{b['sam'] / b['wall']:.1f}, {b['sam'] / b['wall'] / rate:.2f}x" for b in best]])
    rows.append(["mask.tif sha256", *[",".join(sorted({h for r in m["runs"].values() for x in r for h in x["masks"]}))
                                      for m in measurements]])
    for label, m in zip(labels, measurements, strict=True):
        print(f"{label}: library {m['library']}")
    print()
    print(fmt_table(["", *labels], rows))
    print()
    for label, m in zip(labels, measurements, strict=True):
        shares = [min(m["runs"][str(r)], key=lambda x: x["wall"]) for r in rates]
        text = ", ".join(f"{b['sam'] / b['wall'] / r:.2f}x at {r:g}/s" for b, r in zip(shares, rates, strict=True))
        ok = all(b["sam"] / b["wall"] / r >= TARGET for b, r in zip(shares, rates, strict=True))
        print(f"{label}: pipeline / device {text} (target >= {TARGET}: {'meets' if ok else 'MISSES'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="images in the batch (default 6)")
    parser.add_argument("--rates", default="25,40", help="device stand-in rates, SAM tiles/s (default 25,40)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per rate; the fastest counts")
    parser.add_argument("--before", type=Path, help="a second library checkout to measure side by side")
    parser.add_argument("--rounds", type=int, default=1, help="with --before: alternate rounds per library")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rates = [float(r) for r in str(args.rates).split(",") if r]
    sys.path.insert(0, str(BENCH_DIR))
    if args.child_json:
        args.child_json.write_text(json.dumps(measure(args)))
        return 0
    if args.before:
        pooled: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for label, library in (("before", args.before.resolve()), ("after", None)):
                m = child(args, library)
                if label in pooled:
                    for rate, runs in m["runs"].items():
                        pooled[label]["runs"][rate] += runs
                else:
                    pooled[label] = m
        labels, measurements = ["before", "after"], [pooled["before"], pooled["after"]]
    else:
        labels, measurements = ["this checkout"], [measure(args)]
    print()
    print(f"{args.images} x 8192² NAIP-like scene through segment_many, SAM replaced by a device stand-in; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    report(measurements, labels, args.rates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
