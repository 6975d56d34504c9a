"""The ``finetune`` and ``evaluate`` subcommands of ``samgeo-pipeline``.

Every :class:`FinetuneConfig` option is a flag (``--val-fraction``) and a key of the YAML file given
with ``--config`` (``val_fraction``); flags win over the file, which wins over the defaults. With
``--resume``, the run's stored options replace the defaults, so ``finetune --out RUN --resume``
is enough to continue a run.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from samgeo_pipeline.finetune.config import FinetuneConfig, load_finetune_file
from samgeo_pipeline.io.paths import printable
from samgeo_pipeline.options import add_option_flags, flag_values

#: Options of ``evaluate`` (data, radiometry, tiling, prompts at inference, device).
EVALUATE_OPTIONS = (
    "data", "labels", "val_data", "val_labels", "val_fraction", "train_split", "val_split", "image_column",
    "label_column", "images_dir", "labels_dir", "label_ignore", "max_images", "bands", "nodata", "percentiles",
    "composite", "stats_size", "index", "threshold", "texture_window", "min_area",
    "tile_size", "halo", "gsd", "points", "negatives", "erosion", "box_jitter", "max_components",
    "point_merge", "seed", "device", "precision",
)  # fmt: skip

#: Defaults of ``evaluate`` that differ from training's: tight boxes, as at inference.
EVALUATE_DEFAULTS = {"box_jitter": 0}


def add_finetune_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``finetune`` on the subparsers ``sub``; its ``handler`` is :func:`run_finetune`."""
    parser = sub.add_parser(
        "finetune",
        help="fine-tune SAM's mask decoder on labelled water imagery",
        description="Fine-tune SAM's mask decoder (frozen encoders, cached embeddings) on labelled chips, "
        "a Hugging Face dataset, or an orthoimage with labels. Writes OUT/best, OUT/last (segment --model "
        "loads either), history.json and curves.png.",
    )
    parser.add_argument("--config", type=Path, help="YAML file of options (keys as the flags, with _)")
    add_option_flags(parser, FinetuneConfig())
    parser.set_defaults(handler=run_finetune)
    return parser


def add_evaluate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the subparsers ``sub``; its ``handler`` is :func:`run_evaluate`."""
    parser = sub.add_parser(
        "evaluate",
        help="score SAM models against labels, beside the coarse mask (points vs boxes)",
        description="Per-image and summary IoU/F1/precision/recall of the coarse mask and of each model "
        "prompted with points and boxes (from the coarse mask, as at inference, and from the label). "
        "Writes OUT/evaluation.json and OUT/evaluation.md.",
    )
    parser.add_argument("--model", action="append", dest="models", metavar="MODEL",
                        help="SAM model: hub id, folder or fine-tuned checkpoint; repeat to compare (default: "
                        f"{FinetuneConfig().model})")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="report folder (default: evaluation)")
    parser.add_argument("--split", choices=("val", "train", "all"), default="val",
                        help="which samples: the validation part as training used it, the training part, or all")  # fmt: skip
    parser.add_argument("--prompts", default="points,box", help="prompt kinds to compare (default: points,box)")
    parser.add_argument("--prompt-sources", default="coarse,label",
                        help="prompts from the coarse mask (as segment does) and/or the label "
                             "(default: coarse,label)")  # fmt: skip
    parser.add_argument("--config", type=Path, help="YAML file of options (a finetune config works too)")
    add_option_flags(parser, FinetuneConfig().merged(EVALUATE_DEFAULTS), EVALUATE_OPTIONS)
    parser.set_defaults(handler=run_evaluate)
    return parser


def finetune_config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """Defaults (or the stored run's options with ``--resume``) < YAML file < flags."""
    from samgeo_pipeline.finetune.checkpoint import stored_config

    flags = flag_values(args, [f.name for f in fields(FinetuneConfig)])
    from_file = load_finetune_file(args.config) if args.config is not None else {}
    base = FinetuneConfig()
    if flags.get("resume") or from_file.get("resume"):
        out = flags.get("out") or from_file.get("out") or base.out
        base = stored_config(Path(out)) or base
    return base.merged(from_file).merged(flags)


def run_finetune(args: argparse.Namespace) -> int:
    """The ``finetune`` command."""
    from rich.console import Console

    from samgeo_pipeline.finetune.train import finetune

    console = Console(stderr=True)
    config = finetune_config_from_args(args)
    result = finetune(config, log=lambda m: console.print(printable(m), highlight=False, markup=False, soft_wrap=True))
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), None)
    console.print(f"best epoch {result.best_epoch}: {result.best_dir}", highlight=False)
    if best and best.get("val"):
        v = best["val"]
        console.print(f"  validation IoU {v['iou_mean']:.3f} mean / {v['iou_median']:.3f} median, "
                      f"F1 {v['f1_mean']:.3f} / {v['f1_median']:.3f}", highlight=False)  # fmt: skip
    console.print(f"last: {result.last_dir}; curves: {result.curves}", highlight=False)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` command."""
    from rich.console import Console

    from samgeo_pipeline.finetune.evaluate import evaluate

    console = Console(stderr=True)
    from_file = load_finetune_file(args.config) if args.config is not None else {}
    config = FinetuneConfig().merged(EVALUATE_DEFAULTS).merged(from_file).merged(flag_values(args, EVALUATE_OPTIONS))
    models = args.models or [from_file.get("model") or FinetuneConfig().model]
    result = evaluate(
        config,
        models,
        args.out,
        args.split,
        prompts=[p.strip() for p in args.prompts.split(",") if p.strip()],
        prompt_sources=[p.strip() for p in args.prompt_sources.split(",") if p.strip()],
        log=lambda m: console.print(printable(m), highlight=False, markup=False, soft_wrap=True),
    )
    assert result.markdown_path is not None
    text = result.markdown_path.read_text()
    print(text.split("\n## IoU per image")[0].rstrip())  # the summary and the prompt quality
    console.print(f"reports: {result.json_path}, {result.markdown_path}", highlight=False)
    return 0


__all__ = ["add_finetune_parser", "add_evaluate_parser", "run_finetune", "run_evaluate", "finetune_config_from_args"]
