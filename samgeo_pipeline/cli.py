"""``samgeo-pipeline``: segment rasters, write a demo scene.

Every ``segment`` option is also a key of the YAML file given with ``--config``; flags given on
the command line win over the file, which wins over the defaults of :class:`SegmentConfig`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from samgeo_pipeline.config import SegmentConfig, load_config_file
from samgeo_pipeline.errors import SamgeoPipelineError, SamgeoPipelineWarning
from samgeo_pipeline.io.paths import output_dirs, printable
from samgeo_pipeline.options import add_option_flags, flag_values
from samgeo_pipeline.redact import redact


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``samgeo-pipeline``."""
    parser = argparse.ArgumentParser(prog="samgeo-pipeline", description="Find water in rasters with SAM.")
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment rasters into water masks and polygons")
    seg.add_argument("inputs", nargs="+", help="GeoTIFF/COG/VRT files, directories or glob patterns")
    seg.add_argument("--out", required=True, type=Path, help="output root; one folder per input")
    seg.add_argument("--config", type=Path, help="YAML file of options (keys as the flags, with _)")
    add_option_flags(seg, SegmentConfig())
    seg.set_defaults(handler=run_segment)
    demo = sub.add_parser("demo", help="write a small synthetic scene with known water")
    demo.add_argument("out_dir", type=Path, help="folder for demo_scene.tif")
    demo.set_defaults(handler=run_demo)
    change = sub.add_parser("change", help="compare the water of output folders of one place at two or more dates")
    change.add_argument("folders", nargs="+", type=Path, help="output folders of segment (one per date)")
    change.add_argument("--out", required=True, type=Path, help="folder for change.tif, occurrence.tif, change.gpkg, ...")
    change.add_argument("--dates", help="one date per folder, in order, comma-separated (YYYY-MM-DD, YYYYMMDD or "
                        "YYYY); default: the input's tags, else its file name")
    change.add_argument("--crs", help="CRS of the result's grid (default: the earliest date's grid)")
    change.add_argument("--gsd", type=float, help="metres per pixel of the result's grid (default: the earliest date's)")
    change.set_defaults(handler=run_change)
    # Further subcommands register here: each module adds its parser and sets `handler`.
    from samgeo_pipeline.serve.command import add_serve_parser

    add_serve_parser(sub)
    from samgeo_pipeline.finetune.cli import add_evaluate_parser, add_finetune_parser

    add_finetune_parser(sub)
    add_evaluate_parser(sub)
    return parser


def config_from_args(args: argparse.Namespace) -> SegmentConfig:
    """Layer defaults < YAML file < command-line flags."""
    config = SegmentConfig()
    if args.config is not None:
        config = config.merged(load_config_file(args.config))
    return config.merged(flag_values(args, [f.name for f in fields(SegmentConfig)]))


#: Exit code of ``segment`` when no input failed but the coarse rule abstained on some (``uncertain``).
EXIT_UNCERTAIN = 3


def run_segment(args: argparse.Namespace) -> int:
    """The ``segment`` command; returns the exit code: 1 when any input failed or is ``partial``
    (tiles SAM could not segment, listed in its manifest); else :data:`EXIT_UNCERTAIN` (3) when the
    coarse rule abstained on any input (``uncertain``, also when its outputs were reused); else 0."""
    from rich.console import Console

    from samgeo_pipeline.io.raster import expand_inputs
    from samgeo_pipeline.run.batch import segment_many, summary_table

    console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)  # logs: no narrow wrap
    config = config_from_args(args)

    def log(message: str) -> None:  # plain text (file names may hold [...] or ESC), one line per message
        style = "red" if message.startswith("error:") else "yellow" if message.startswith("uncertain:") else None
        console.print(printable(redact(message)), style=style, markup=False, highlight=False, soft_wrap=True)

    with tempfile.TemporaryDirectory(prefix="samgeo-stac-items-") as items:
        specs, sources = _fetch_item_urls(args.inputs, Path(items))
        inputs = expand_inputs(specs, exclude=args.out)  # outputs are never inputs
        results = segment_many(inputs, output_dirs(inputs, args.out), config, log=log, root=args.out,
                               sources=sources)  # fmt: skip
    console.print(summary_table(results))
    if any(r.status in ("failed", "partial") for r in results):
        return 1
    return EXIT_UNCERTAIN if any(r.uncertain for r in results) else 0


def run_change(args: argparse.Namespace) -> int:
    """The ``change`` command: 0 when the comparison is written (folders left out are logged)."""
    from samgeo_pipeline.change.compare import run_change as compare

    dates = [d.strip() for d in args.dates.split(",")] if args.dates else None
    result = compare(args.folders, args.out, dates, args.crs, args.gsd,
                     log=lambda m: print(printable(m), file=sys.stderr))  # fmt: skip
    for item, area in zip(result.dates, result.date_area_m2, strict=True):
        print(f"{item.date.label}\t{area / 1e6:.4f} km² water\t{item.folder}")
    print(result.out_dir)
    return 0


def _fetch_item_urls(specs: Sequence[str], folder: Path) -> tuple[list[str], dict[Path, str]]:
    """``specs`` with each STAC Item URL (http(s), ``.json``) replaced by a local copy in ``folder``
    (:func:`~samgeo_pipeline.io.stac_input.fetch_item`), and copy -> URL (the source manifests name)."""
    from samgeo_pipeline.io.stac_input import fetch_item, is_item_url

    local, sources = [], {}
    for spec in map(str, specs):
        if is_item_url(spec):
            copy = fetch_item(spec, folder)
            sources[copy.resolve()] = spec
            spec = str(copy)
        local.append(spec)
    return local, sources


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` command."""
    from samgeo_pipeline.demo import write_demo_scene

    path = write_demo_scene(args.out_dir / "demo_scene.tif")
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samgeo-pipeline`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    warnings.simplefilter("default", SamgeoPipelineWarning)
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {printable(message)}\n"
    try:
        status: int = args.handler(args)
        return status
    except SamgeoPipelineError as exc:
        print(f"error: {printable(redact(str(exc)))}", file=sys.stderr)  # a URL's credentials never shown
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
