"""Fine-tune SAM's mask decoder on labelled water imagery: :func:`finetune`.

The vision encoder and (by default) the prompt encoder are frozen; each image is embedded once
(:mod:`~samgeo_pipeline.finetune.cache`), and every epoch draws new prompts from the label (or
coarse) mask, decodes them batched and merged as the segment pipeline merges them, and steps AdamW
on focal + dice (20 : 1) or BCE. After each epoch: validation loss and per-image metrics, the
``last`` checkpoint (with the state ``--resume`` needs), the ``best`` one when validation IoU
improved, and ``history.json``; ``curves.png`` when the run ends. Hugging Face Accelerate runs it on CPU, one GPU
(bf16/fp16 mixed precision) or several (``accelerate launch``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from samgeo_pipeline.errors import InputError
from samgeo_pipeline.finetune.cache import EmbeddingCache, embedding_fingerprint
from samgeo_pipeline.finetune.checkpoint import (
    build_meta,
    load_training_state,
    restore_rng,
    rng_states,
    save_checkpoint,
)
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.curves import plot_curves
from samgeo_pipeline.finetune.loops import Run, prepare_split, steps_per_epoch, train_epoch, validate
from samgeo_pipeline.finetune.metrics import summarize
from samgeo_pipeline.finetune.setup import (
    check_finetunable,
    embedding_dtype,
    freeze_for_finetuning,
    lr_factor,
    make_accelerator,
)
from samgeo_pipeline.finetune.sources import SampleSource, open_datasets
from samgeo_pipeline.io.atomic import write_text_atomic
from samgeo_pipeline.sam.predictor import ModelSource, load_sam_model

if TYPE_CHECKING:
    pass


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune`.

    Attributes:
        out_dir: the run's folder.
        best_dir: checkpoint of the best epoch (highest validation IoU mean; lowest training loss
            without validation data).
        last_dir: checkpoint of the last epoch run.
        history: one record per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val`` (summary of
            :func:`~samgeo_pipeline.finetune.metrics.summarize`), ``lr``, ``seconds``.
        best_epoch: 1-based epoch of ``best_dir``.
        completed: False when the run stopped at ``stop_after_epoch`` before ``epochs``.
        curves: the training-curves PNG.
        seconds: ``prepare`` (reading, packing, embedding) and ``total``.
        counts: samples used: ``train``, ``val``, ``dropped`` (no valid pixel), ``unprompted``
            (training samples whose prompt mask is empty, left out of training).
        model: the trained ``SamModel`` in memory (weights of the last epoch run, as in ``last_dir``).
    """

    out_dir: Path
    best_dir: Path | None
    last_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int | None
    completed: bool
    curves: Path | None
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    model: torch.nn.Module | None = None


def finetune(
    config: FinetuneConfig,
    train_source: SampleSource | None = None,
    val_source: SampleSource | None = None,
    log: Callable[[str], None] | None = print,
) -> FinetuneResult:
    """Fine-tune SAM's mask decoder as ``config`` says and write checkpoints to ``config.out``.

    The stages, in order (the order fixes the random draws, so a run and its ``--resume`` match):
    the accelerator and the seed, the data, the model and its embedding cache, every sample
    prepared once, the optimiser (and the resumed state), the epochs, the curves.

    Args:
        config: every option (see :class:`FinetuneConfig`).
        train_source, val_source: samples to use instead of opening ``config.data`` (for flows,
            benchmarks and tests); ``val_source`` may be None.
        log: where one-line progress messages go (None: nowhere).

    Returns:
        The run's checkpoints, history and timings.

    Raises:
        ConfigError: bad options, or ``resume`` with options that differ from the run's.
        InputError: unreadable data, or no training sample with water to prompt from.
        ModelUnavailableError: the base model cannot be loaded.
    """
    say = log or (lambda message: None)
    t_start = time.perf_counter()
    out = Path(config.out)
    state = load_training_state(out, config) if config.resume else None
    accelerator = _seeded_accelerator(config)
    if train_source is None:
        train_source, val_source = open_datasets(config)
    run, model_source, trainable = _load_run(config, accelerator, out, resumed=state is not None)
    progress = config.progress and accelerator.is_main_process
    data = _prepare_data(run, train_source, val_source, progress)
    optimizer, scheduler = _optimiser(run, trainable, data.steps)
    epochs = _resume(state, run, optimizer, scheduler, say)
    _say_start(say, run, model_source, data)
    completed = _train_epochs(run, data, epochs, optimizer, scheduler, trainable, progress, say)
    if accelerator.is_main_process and epochs.history:
        plot_curves(epochs.history, out / "curves.png",
                    f"fine-tuning {Path(config.model).name}: best epoch {epochs.best['epoch']}")  # fmt: skip
    return FinetuneResult(
        out_dir=out,
        best_dir=out / "best" if (out / "best").is_dir() else None,
        last_dir=out / "last",
        history=epochs.history,
        best_epoch=epochs.best["epoch"],
        completed=completed,
        curves=out / "curves.png" if (out / "curves.png").is_file() else None,
        seconds={"prepare": data.prepare_seconds, "total": time.perf_counter() - t_start},
        counts=data.counts,
        model=accelerator.unwrap_model(run.model).eval(),
    )


@dataclass
class _Data:
    """The prepared samples of a run: what the epochs draw from and what the checkpoints record."""

    positions: list[int]
    """Training positions with prompts (all processes)."""
    mine: list[int]
    """Those this process trains on."""
    steps: int
    """Optimiser steps per epoch."""
    counts: dict[str, int]
    prepare_seconds: float
    preprocessing: dict[str, Any]
    """The checkpoint's ``preprocessing`` (what ``segment`` applies when it loads the model)."""
    data_meta: dict[str, Any]


@dataclass
class _Epochs:
    """Where the epochs stand: the history so far, the best epoch, the first epoch to run (0-based)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"score": None, "epoch": None})
    start: int = 0


def _seeded_accelerator(config: FinetuneConfig) -> Any:
    """The accelerator (:func:`make_accelerator`), with every random generator seeded."""
    accelerator = make_accelerator(config)
    from accelerate.utils import set_seed

    set_seed(config.seed)
    return accelerator


def _load_run(
    config: FinetuneConfig, accelerator: Any, out: Path, resumed: bool
) -> tuple[Run, ModelSource, list[torch.nn.Parameter]]:
    """The model (the run's ``last`` checkpoint when ``resumed``), frozen but for what trains, on the
    device, with its embedding cache: the :class:`Run`, the model's source and the trainable parameters."""
    model, model_source = load_sam_model(str(out / "last") if resumed else config.model)
    check_finetunable(model_source)
    trainable = freeze_for_finetuning(model, config.train_prompt_encoder)
    model.to(accelerator.device)
    model_config: Any = model.config  # a transformers SamConfig
    image_size = int(model_config.vision_config.image_size)
    dtype = embedding_dtype(config, accelerator)
    default_workers = min(8, (os.cpu_count() or 2) - 1) if accelerator.device.type == "cuda" else 0
    workers = config.workers if config.workers is not None else default_workers
    cache_root = Path(config.cache_dir) if config.cache_dir else out / "embedding_cache"
    side = int(model_config.prompt_encoder_config.image_embedding_size)
    cache = EmbeddingCache(config.cache, accelerator.device, dtype, cache_root, embedding_fingerprint(config, image_size, dtype),
                           shape=(int(model_config.vision_config.output_channels), side, side))  # fmt: skip
    run = Run(config, accelerator, model, model, cache, dtype, image_size,
              4 * side, workers)  # fmt: skip
    return run, model_source, trainable


def _prepare_data(run: Run, train_source: SampleSource, val_source: SampleSource | None, progress: bool) -> _Data:
    """Read, pack and (cache on) embed every sample once; count what is used.

    Raises:
        InputError: no training sample has water to prompt from.
    """
    config = run.config
    t = time.perf_counter()
    train_prep, dropped = prepare_split(run, "train", train_source, progress)
    val_prep, val_dropped = prepare_split(run, "val", val_source, progress) if val_source is not None else ([], 0)
    prepare_seconds = time.perf_counter() - t
    positions = [i for i, ps in enumerate(train_prep) if ps.has_prompts]
    if not positions:
        raise InputError(f"{train_source.description}: no training sample has water in its "
                         f"{config.prompt_source} mask to prompt from")
    counts = {"train": len(positions), "val": len(val_prep), "dropped": dropped + val_dropped,
              "unprompted": len(train_prep) - len(positions)}  # fmt: skip
    preprocessing = {
        "composite": list(train_source.composite),
        "percentiles": list(config.percentiles),
        "bands": None if config.bands == "auto" else config.bands,
        "band_names": list(train_source.band_names),
    }
    data_meta = {"train": train_source.description, "val": val_source.description if val_source else None, **counts}
    return _Data(
        positions=positions,
        mine=[p for p in positions if run.owns(p)],
        steps=steps_per_epoch(len(positions), run.accelerator.num_processes, config.batch_size),
        counts=counts,
        prepare_seconds=prepare_seconds,
        preprocessing=preprocessing,
        data_meta=data_meta,
    )


def _optimiser(run: Run, trainable: list[torch.nn.Parameter], steps: int) -> tuple[Any, Any]:
    """AdamW and its warm-up + decay schedule; the model and optimiser prepared by Accelerate
    (``run.model`` becomes the prepared model)."""
    config = run.config
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    total_steps = steps * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config.warmup_steps, config.schedule)
    )
    run.model, optimizer = run.accelerator.prepare(run.model, optimizer)
    return optimizer, scheduler


def _resume(state: dict[str, Any] | None, run: Run, optimizer: Any, scheduler: Any, say: Callable[[str], None]) -> _Epochs:
    """A fresh start, or (with a stored training ``state``) the optimiser, scheduler, scaler and random
    generators restored and the history so far."""
    if state is None:
        return _Epochs()
    accelerator = run.accelerator
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    epochs = _Epochs(state["history"], state["best"], int(state["epoch"]))
    restore_rng(state["rng"])
    say(f"resuming {Path(run.config.out)} after epoch {epochs.start} of {run.config.epochs}")
    return epochs


def _say_start(say: Callable[[str], None], run: Run, model_source: ModelSource, data: _Data) -> None:
    """The run's first lines: model, device, samples, steps, cache; what was left out."""
    config, accelerator, counts = run.config, run.accelerator, data.counts
    say(
        f"fine-tuning {model_source} on {accelerator.device} ({accelerator.mixed_precision} mixed precision): "
        f"{counts['train']} training / {counts['val']} validation samples, {data.steps} steps per epoch, "
        f"embedding cache {config.cache}; prepared in {data.prepare_seconds:.1f} s"
    )
    if counts["unprompted"] or counts["dropped"]:
        say(f"  {counts['unprompted']} training samples without water in the {config.prompt_source} mask left out; "
            f"{counts['dropped']} samples without valid pixels dropped")  # fmt: skip


def _train_epochs(
    run: Run,
    data: _Data,
    epochs: _Epochs,
    optimizer: Any,
    scheduler: Any,
    trainable: list[torch.nn.Parameter],
    progress: bool,
    say: Callable[[str], None],
) -> bool:
    """Run the epochs from ``epochs.start`` (updating ``epochs``); each one trains, validates, saves
    its checkpoints and logs a line. Returns False when ``stop_after_epoch`` ended the run early."""
    config, accelerator = run.config, run.accelerator
    epoch_bar = tqdm(range(epochs.start, config.epochs), initial=epochs.start, total=config.epochs, desc="fine-tune",
                     unit="epoch", disable=not progress)  # fmt: skip
    completed = True
    for epoch in epoch_bar:
        record = _run_epoch(run, epoch, data, optimizer, scheduler, trainable, progress)
        epochs.history.append(record)
        summary = record["val"]
        score = summary["iou_mean"] if summary else -record["train_loss"]
        improved = epochs.best["score"] is None or score > epochs.best["score"]
        if improved:
            epochs.best = {"score": score, "epoch": epoch + 1}
        if accelerator.is_main_process:
            _save_epoch(run, Path(config.out), epoch + 1, epochs.history, epochs.best, improved, optimizer, scheduler,
                        data.preprocessing, data.data_meta)  # fmt: skip
        accelerator.wait_for_everyone()
        say(_epoch_line(record, config.epochs))
        epoch_bar.set_postfix(loss=f"{record['train_loss']:.4f}", val_iou=f"{summary['iou_mean']:.3f}" if summary else "-")
        if config.stop_after_epoch is not None and epoch + 1 >= config.stop_after_epoch and epoch + 1 < config.epochs:
            completed = False
            say(f"stopped after epoch {epoch + 1} as asked; continue with --resume")
            break
    epoch_bar.close()
    return completed


def _run_epoch(
    run: Run, epoch: int, data: _Data, optimizer: Any, scheduler: Any, trainable: list[torch.nn.Parameter], progress: bool
) -> dict[str, Any]:
    """Train one epoch (0-based ``epoch``) and validate: its ``history`` record."""
    t_epoch = time.perf_counter()
    train_loss = train_epoch(run, epoch, data.mine, data.steps, optimizer, scheduler, trainable, progress)
    train_seconds = time.perf_counter() - t_epoch
    val_loss, rows = validate(run, progress)
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val": summarize(rows) if rows else None,
        "lr": float(scheduler.get_last_lr()[0]),
        "seconds": time.perf_counter() - t_epoch,
        "train_seconds": train_seconds,
    }


def _save_epoch(
    run: Run,
    out: Path,
    epoch: int,
    history: list[dict[str, Any]],
    best: dict[str, Any],
    improved: bool,
    optimizer: Any,
    scheduler: Any,
    preprocessing: dict[str, Any],
    data_meta: dict[str, Any],
) -> None:
    """Write last/ (with the training state), best/ when improved, history.json and curves.png."""
    config, accelerator = run.config, run.accelerator
    model = accelerator.unwrap_model(run.model)
    state = {
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "history": history,
        "best": best,
        "rng": rng_states(),
    }
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "last", model, build_meta(config, "last", epoch, history, preprocessing, data_meta), state)
    if improved:
        save_checkpoint(out / "best", model, build_meta(config, "best", epoch, history, preprocessing, data_meta))
    write_text_atomic(out / "history.json", json.dumps({"best_epoch": best["epoch"], "history": history}, indent=2))


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    line = f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}"
    if record["val_loss"] is not None:
        line += f", val loss {record['val_loss']:.4f}"
    val = record["val"]
    if val:
        line += (f", val IoU {val['iou_mean']:.3f} mean / {val['iou_median']:.3f} median, "
                 f"F1 {val['f1_mean']:.3f} / {val['f1_median']:.3f}")  # fmt: skip
    return line + f" ({record['seconds']:.1f} s)"


__all__ = ["finetune", "FinetuneResult", "make_accelerator", "freeze_for_finetuning", "lr_factor"]
