"""``evaluate``: per-image and summary metrics of SAM models against labels, beside the coarse mask.

For every labelled sample, the water masks of several methods are scored
(:mod:`~samgeo_pipeline.finetune.metrics`):

- ``coarse mask``: the segment pipeline's index/HSV mask alone (``--model none``);
- ``MODEL points@coarse`` / ``MODEL box@coarse``: SAM prompted from the coarse mask, as
  ``segment`` does at inference;
- ``MODEL points@label`` / ``MODEL box@label``: SAM prompted from the label itself (the seed's
  validation protocol: it measures the model given good prompts, not the whole pipeline).

Each model decodes through its family's predictor (:mod:`samgeo_pipeline.models`), the inference path, with
its checkpoint's composite and percentiles. Results go to ``evaluation.json`` and ``evaluation.md``.

Point prompts are also scored against the label (:func:`~samgeo_pipeline.finetune.metrics.prompt_quality`:
positives on water, negatives on land, water bodies reached): the ``coarse mask`` rows carry the
quality of the points ``points@coarse`` uses (no model needed), each ``points@...`` row that of its
own points; summaries pool them under ``prompts``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.metrics import MIN_BODY_PX, confusion, image_row, prompt_quality, summarize
from samgeo_pipeline.finetune.sources import ConcatSource, SampleSource, open_datasets
from samgeo_pipeline.io.atomic import write_text_atomic
from samgeo_pipeline.water.prompts import ComponentPrompt, component_prompts

Split = Literal["val", "train", "all"]
COARSE = "coarse mask"


@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate`.

    Attributes:
        methods: method name -> summary (:func:`~samgeo_pipeline.finetune.metrics.summarize`), in
            the order evaluated.
        images: one row per (image, method): ``name``, ``method``, counts and scores.
        json_path, markdown_path: the written reports (None when no ``out_dir`` was given).
    """

    methods: dict[str, dict[str, Any]]
    images: list[dict[str, Any]]
    json_path: Path | None = None
    markdown_path: Path | None = None


def select_split(config: FinetuneConfig, split: Split) -> SampleSource:
    """The samples of ``split``: ``val`` (what training validated on), ``train``, or ``all`` (train + val)."""
    train, val = open_datasets(config)
    if split == "train":
        return train
    if split == "val":
        if val is None:
            raise ConfigError("--split val: the data has no validation part (set --val-fraction, --val-data, or use --split all)")
        return val
    return train if val is None else ConcatSource([train, val])


def model_label(model: str) -> str:
    """Short name of a model for tables: a checkpoint's ``RUN/best``, a folder's name, or the hub id."""
    path = Path(model)
    if path.exists():
        return f"{path.parent.name}/{path.name}" if path.name in ("best", "last") else path.name
    return model


def evaluate(
    config: FinetuneConfig,
    models: Sequence[str],
    out_dir: Path | None = None,
    split: Split = "val",
    prompts: Sequence[str] = ("points", "box"),
    prompt_sources: Sequence[str] = ("coarse", "label"),
    log: Callable[[str], None] | None = print,
) -> EvaluationResult:
    """Score the coarse mask and each model (per prompt kind and source) on labelled data.

    Args:
        config: data, radiometry and prompt options (``box_jitter`` 0 gives tight boxes).
        models: SAM models (hub ids, folders, fine-tuned checkpoints); ``none`` entries are skipped.
        out_dir: where ``evaluation.json`` and ``evaluation.md`` go (None: not written).
        split: which samples (see :func:`select_split`).
        prompts: prompt kinds, ``points`` and/or ``box``.
        prompt_sources: ``coarse`` (as at inference) and/or ``label``.
        log: one-line messages.

    Returns:
        Summaries per method and per-image rows.
    """
    say = log or (lambda message: None)
    bad = sorted(set(prompts) - {"points", "box"}) + sorted(set(prompt_sources) - {"coarse", "label"})
    if bad:
        raise ConfigError(f"evaluate: unknown prompt kind/source {bad}; use points, box / coarse, label")
    t0 = time.perf_counter()
    source = select_split(config, split)
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    for i in range(len(source)):
        sample = source.load(i)
        if not sample.valid.any():
            continue
        names.append(sample.name)
        row = {"method": COARSE, **image_row(sample.name, confusion(sample.coarse, sample.label, sample.valid))}
        points = sample_prompts(config, "points", sample.coarse, sample.valid, len(names) - 1)  # as points@coarse
        row["prompts"] = prompt_quality(points, sample.label, MIN_BODY_PX, sample.valid)
        rows.append(row)
    say(f"evaluating on {len(names)} images of {source.description}")
    methods = [COARSE]
    for model in models:
        if model.lower() == "none":
            continue
        model_rows = _evaluate_model(config, model, split, set(names), prompts, prompt_sources)
        rows.extend(model_rows)
        methods.extend(dict.fromkeys(r["method"] for r in model_rows))
    summaries = {m: summarize([r for r in rows if r["method"] == m]) for m in methods}
    result = EvaluationResult(summaries, rows)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        report = {
            "data": source.description,
            "split": split,
            "models": list(models),
            "config": config.to_dict(),
            "seconds": time.perf_counter() - t0,
            "methods": summaries,
            "images": rows,
        }
        result.json_path = out_dir / "evaluation.json"
        write_text_atomic(result.json_path, json.dumps(report, indent=2))
        result.markdown_path = out_dir / "evaluation.md"
        write_text_atomic(result.markdown_path, markdown_report(result, source.description, split))
    return result


def _evaluate_model(
    config: FinetuneConfig,
    model: str,
    split: Split,
    names: set[str],
    prompts: Sequence[str],
    prompt_sources: Sequence[str],
) -> list[dict[str, Any]]:
    """Rows of one model: each image under each prompt kind and source."""
    from samgeo_pipeline.models.families import FAMILIES
    from samgeo_pipeline.sam.predictor import checkpoint_config, load_sam_model, resolve_device, resolve_dtype

    source = select_split(checkpoint_config(config, model), split)  # inputs as this model was trained on
    sam, loaded = load_sam_model(model)
    if "points" not in FAMILIES[loaded.family].prompts:  # SAM 3: text prompts only
        raise ConfigError(f"{model}: evaluate takes point and box prompts; {FAMILIES[loaded.family].label} answers text "
                          "prompts only here (segment --prompt text --text water)")  # fmt: skip
    device = resolve_device(config.device)
    predictor = FAMILIES[loaded.family].predictor_class()(sam, device, resolve_dtype(device, config.precision))
    label = model_label(model)
    rows: list[dict[str, Any]] = []
    position = -1
    for i in range(len(source)):
        sample = source.load(i)
        if sample.name not in names:
            continue
        position += 1
        embedding, resized = predictor.embed(sample.rgb[None])
        for kind in prompts:
            for origin in prompt_sources:
                mask = sample.coarse if origin == "coarse" else sample.label
                component = sample_prompts(config, kind, mask, sample.valid, position)
                if component:
                    logits = predictor.predict_logits(embedding, component, sample.label.shape, resized, config.point_merge)
                    pred = logits > 0
                else:
                    pred = np.zeros(sample.label.shape, bool)
                method = f"{label} {kind}@{origin}"
                row = {"method": method, **image_row(sample.name, confusion(pred, sample.label, sample.valid))}
                if kind == "points":
                    row["prompts"] = prompt_quality(component, sample.label, MIN_BODY_PX, sample.valid)
                rows.append(row)
    return rows


def sample_prompts(
    config: FinetuneConfig, kind: str, mask: np.ndarray, valid: np.ndarray, position: int
) -> list[ComponentPrompt]:
    """The prompts of the sample at ``position`` of the split, drawn from ``mask`` (coarse mask or label).

    The generator is training's validation one (same split, same prompts), so every method and the
    coarse mask's prompt quality see the same points.
    """
    rng = np.random.default_rng([config.seed, 1, 0, position])
    return component_prompts(
        mask, valid, kind=kind, n_points=config.points, n_negatives=config.negatives,
        erosion=config.erosion, box_jitter=config.box_jitter, max_components=config.max_components, rng=rng,
    )  # fmt: skip


def markdown_report(result: EvaluationResult, data: str, split: str) -> str:
    """A summary table (one row per method), the point prompts' quality, and a per-image IoU table (one column per method)."""
    lines = [
        f"# Evaluation on {data} ({split})",
        "",
        "Per-image binary metrics on valid pixels, water = positive; a ratio with a zero denominator "
        "is 1.0 when prediction and label are both empty, else 0.0. Pooled: over all pixels.",
        "",
        "| method | images | IoU mean | IoU median | F1 mean | F1 median | precision mean | recall mean | pooled IoU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in result.methods.items():
        cells = [s[k] for k in ("iou_mean", "iou_median", "f1_mean", "f1_median", "precision_mean", "recall_mean")]
        text = " | ".join("-" if v is None else f"{v:.3f}" for v in cells)
        lines.append(f"| {method} | {s['n']} | {text} | {s['pooled']['iou']:.3f} |")
    quality = {m: s["prompts"] for m, s in result.methods.items() if s.get("prompts")}
    if quality:
        min_px = next(iter(quality.values()))["min_body_px"]
        lines += [
            "",
            "## Prompt quality (points)",
            "",
            "Point prompts against the label, pooled over images: positives on labelled water, negatives on "
            f"land, water bodies (8-connected) of more than {min_px} px holding a positive point. The coarse "
            "mask: the points that `points@coarse` uses. Targets: >= 0.98, >= 0.98, >= 0.9.",
            "",
            f"| method | positives | on water | negatives | on land | bodies > {min_px} px | with a positive |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, q in quality.items():
            keys = ("positives_on_water_fraction", "negatives_on_land_fraction", "bodies_prompted_fraction")
            on_water, on_land, reached = ("-" if q[k] is None else f"{q[k]:.3f}" for k in keys)
            lines.append(
                f"| {method} | {q['positives']} | {on_water} | {q['negatives']} | {on_land} | {q['bodies']} | {reached} |"
            )
    methods = list(result.methods)
    lines += ["", "## IoU per image", "", "| image | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    by_image: dict[str, dict[str, float]] = {}
    for row in result.images:
        by_image.setdefault(row["name"], {})[row["method"]] = row["iou"]
    for name, values in by_image.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[m]:.3f}" if m in values else "-" for m in methods) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["evaluate", "EvaluationResult", "select_split", "markdown_report", "model_label", "sample_prompts"]
