"""One pass over the data: preparation (and embedding), a training epoch, a validation pass.

These are the inner loops of :func:`samgeo_pipeline.finetune.train.finetune`. A :class:`Run`
bundles what they share. Each process of a multi-GPU run owns the samples whose position ``i``
in a split satisfies ``i % processes == rank``: it embeds only those, trains and validates on
them, and the validation rows are gathered on every process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from samgeo_pipeline.finetune.cache import EmbeddingCache
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.decode import decode_components, embed_images, merge_components, native_prediction
from samgeo_pipeline.finetune.losses import mask_loss
from samgeo_pipeline.finetune.metrics import confusion, image_row
from samgeo_pipeline.finetune.samples import PreparedSample, PromptBatch, PromptDataset, collate, prepare_sample
from samgeo_pipeline.finetune.sources import Sample, SampleSource


@dataclass
class Run:
    """State shared by the loops of one fine-tuning run."""

    config: FinetuneConfig
    accelerator: Any
    model: torch.nn.Module
    """The model as prepared by Accelerate (possibly wrapped for distributed training)."""
    encoder: torch.nn.Module
    """The unwrapped model, used for the frozen encoder."""
    cache: EmbeddingCache
    embed_dtype: torch.dtype
    image_size: int
    mask_size: int
    workers: int
    sources: dict[str, SampleSource] = field(default_factory=dict)
    prepared: dict[str, list[PreparedSample]] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        device: torch.device = self.accelerator.device
        return device

    def owns(self, position: int) -> bool:
        """Whether this process handles the sample at ``position`` of a split."""
        owned: bool = position % self.accelerator.num_processes == self.accelerator.process_index
        return owned

    loaders: dict[str, DataLoader[Any]] = field(default_factory=dict)
    """Persistent batch loaders per split (workers live for the whole run)."""

    def loader(self, dataset: Dataset[Any], batch_sampler: Any = None, persistent: bool = False) -> DataLoader[Any]:
        """A DataLoader over ``dataset`` with this run's workers: collated batches, or single items."""
        common: dict[str, Any] = {"num_workers": self.workers, "pin_memory": self.device.type == "cuda"}
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate,
                              persistent_workers=persistent and self.workers > 0, **common)  # fmt: skip
        return DataLoader(dataset, batch_size=None, collate_fn=_identity, **common)


class EpochBatches:
    """Batch sampler of the training split: :func:`epoch_batches` of the current ``epoch``.

    Yields ``(epoch, position)`` keys, so persistent workers draw each epoch's prompts without
    being restarted.
    """

    def __init__(self, positions: list[int], batch_size: int, steps: int, seed: int, rank: int) -> None:
        self.positions, self.batch_size, self.steps, self.seed, self.rank = positions, batch_size, steps, seed, rank
        self.epoch = 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in epoch_batches(self.positions, self.batch_size, self.steps, self.seed, self.epoch, self.rank):
            yield [(self.epoch, position) for position in batch]

    def __len__(self) -> int:
        return len(epoch_batches(self.positions, self.batch_size, self.steps, self.seed, self.epoch, self.rank))


class _Loading(Dataset[Sample]):
    """A source as a Dataset of :class:`Sample` (for parallel reading in the preparation pass)."""

    def __init__(self, source: SampleSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Sample:
        return self.source.load(index)


def _identity(item: Any) -> Any:
    return item


def prepare_split(run: Run, split: str, source: SampleSource, progress: bool) -> tuple[list[PreparedSample], int]:
    """Read every sample once: pack its masks, and embed it when the cache is on.

    Returns:
        ``(prepared, dropped)``: the samples with valid pixels, and how many had none.
    """
    prepared: list[PreparedSample] = []
    pending: list[tuple[str, np.ndarray]] = []
    dropped = 0
    bar = tqdm(run.loader(_Loading(source)), total=len(source), desc=f"prepare {split}", unit="img",
               disable=not progress, leave=False)  # fmt: skip
    for source_index, sample in enumerate(bar):
        if not sample.valid.any():
            dropped += 1
            continue
        ps = prepare_sample(sample, source_index, run.config, run.image_size, run.mask_size)
        key = f"{split}/{ps.name}"
        if run.cache.enabled and ps.has_prompts and run.owns(len(prepared)) and key not in run.cache:
            pending.append((key, sample.rgb))
            if len(pending) >= run.config.batch_size:
                _embed_into_cache(run, pending)
                pending = []
        prepared.append(ps)
    if pending:
        _embed_into_cache(run, pending)
    run.sources[split] = source
    run.prepared[split] = prepared
    return prepared, dropped


def _embed_into_cache(run: Run, items: list[tuple[str, np.ndarray]]) -> None:
    with run.accelerator.autocast():
        embeddings = embed_images(run.encoder, [rgb for _, rgb in items], run.image_size, run.device)
    for (key, _), embedding in zip(items, embeddings, strict=True):
        run.cache.put(key, embedding)


def batch_embeddings(run: Run, split: str, batch: PromptBatch) -> torch.Tensor:
    """``(B, C, e, e)`` embeddings of a batch: from the cache, else from the encoder.

    Items without prompts get zeros (their decoder output is discarded). With the cache off the
    encoder runs on ``batch.rgb``; with it on, a missing entry is read, embedded and stored.
    """
    prepared = run.prepared[split]
    has = batch.has_prompts
    if not run.cache.enabled:
        assert batch.rgb is not None
        chosen = [i for i, h in enumerate(has) if h]
        embedded = embed_images(run.encoder, [batch.rgb[i] for i in chosen], run.image_size, run.device) if chosen else None
        return _scatter(embedded, chosen, len(has), run).to(run.embed_dtype)
    found: list[torch.Tensor | None] = []
    missing: list[int] = []
    for i, position in enumerate(batch.positions):
        value = run.cache.get(f"{split}/{prepared[position].name}") if has[i] else None
        found.append(value)
        if value is None and has[i]:
            missing.append(i)
    if missing:
        source = run.sources[split]
        rgbs = [source.load(prepared[batch.positions[i]].source_index).rgb for i in missing]
        new = embed_images(run.encoder, rgbs, run.image_size, run.device)
        for i, embedding in zip(missing, new, strict=True):
            run.cache.put(f"{split}/{prepared[batch.positions[i]].name}", embedding)
            found[i] = run.cache.get(f"{split}/{prepared[batch.positions[i]].name}")
    present = [i for i, v in enumerate(found) if v is not None]
    stacked = torch.stack([v for v in found if v is not None]) if present else None
    return _scatter(stacked, present, len(has), run).to(run.embed_dtype)


def _scatter(values: torch.Tensor | None, index: list[int], size: int, run: Run) -> torch.Tensor:
    if values is not None and len(index) == size:
        return values
    config: Any = run.encoder.config  # a transformers SamConfig
    channels = int(config.vision_config.output_channels)
    side = int(config.prompt_encoder_config.image_embedding_size)
    out = torch.zeros((size, channels, side, side), device=run.device, dtype=run.embed_dtype)
    if values is not None:
        out[index] = values.to(out.dtype)
    return out


def epoch_batches(positions: list[int], batch_size: int, steps: int, seed: int, epoch: int, rank: int) -> list[list[int]]:
    """This epoch's batches: ``positions`` shuffled by (seed, epoch, rank), ``steps`` batches."""
    order = np.random.default_rng([seed, epoch, rank, 11]).permutation(np.asarray(positions, dtype=np.int64)).tolist()
    usable = min(len(order), steps * batch_size)
    return [order[i : min(i + batch_size, usable)] for i in range(0, usable, batch_size)][:steps]


def steps_per_epoch(n_positions: int, processes: int, batch_size: int) -> int:
    """Optimisation steps per epoch, the same on every process."""
    return max(1, math.ceil((n_positions // processes or 1) / batch_size))


def train_epoch(
    run: Run,
    epoch: int,
    positions: list[int],
    steps: int,
    optimizer: Any,
    scheduler: Any,
    trainable: list[torch.nn.Parameter],
    progress: bool,
    on_step: Callable[[float], None] | None = None,
) -> float:
    """One epoch of decoder training on this process's ``positions``; returns the mean loss (all processes)."""
    config = run.config
    if "train" not in run.loaders:
        dataset = PromptDataset(run.prepared["train"], config, run.image_size, 0,
                                source=None if run.cache.enabled else run.sources["train"])  # fmt: skip
        sampler = EpochBatches(positions, config.batch_size, steps, config.seed, run.accelerator.process_index)
        run.loaders["train"] = run.loader(dataset, sampler, persistent=True)
    loader = run.loaders["train"]
    batches = loader.batch_sampler
    assert isinstance(batches, EpochBatches)  # the train loader is built with one above
    batches.epoch = epoch
    total = torch.zeros((), device=run.device)
    count = torch.zeros((), device=run.device)
    bar = tqdm(loader, total=len(loader), desc=f"epoch {epoch + 1}", unit="batch", disable=not progress, leave=False)
    for batch in bar:
        batch = batch.to(run.device)
        with run.accelerator.autocast():
            embeddings = batch_embeddings(run, "train", batch)
            components, _ = decode_components(run.model, embeddings, batch, config.point_merge)
            logits = merge_components(components)
        loss = mask_loss(logits, batch.target, batch.weight, config).mean()
        run.accelerator.backward(loss)
        if config.grad_clip > 0:
            run.accelerator.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        n = len(batch.positions)
        total += loss.detach() * n
        count += n
        if progress:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if on_step is not None:
            on_step(float(loss.detach()))
    total = run.accelerator.reduce(total, "sum")
    count = run.accelerator.reduce(count, "sum")
    return float(total / count.clamp(min=1))


@torch.no_grad()
def validate(run: Run, progress: bool) -> tuple[float | None, list[dict[str, Any]]]:
    """Validation loss (mean over images with prompts) and one metrics row per validation image.

    Images whose prompt mask is empty get an empty prediction (no prompt, as in the segment
    pipeline) and count in the metrics, not in the loss.
    """
    prepared = run.prepared.get("val") or []
    positions = [i for i in range(len(prepared)) if run.owns(i)]
    if not prepared:
        return None, []
    config = run.config
    if "val" not in run.loaders:
        dataset = PromptDataset(prepared, config, run.image_size, 1,
                                source=None if run.cache.enabled else run.sources["val"], native=True)  # fmt: skip
        batches = [positions[i : i + config.batch_size] for i in range(0, len(positions), config.batch_size)]
        run.loaders["val"] = run.loader(dataset, batches, persistent=True)
    loss_sum, loss_n, rows = 0.0, 0, []
    loader = run.loaders["val"]
    bar = tqdm(loader, total=len(loader), desc="validate", unit="batch", disable=not progress, leave=False)
    for batch in bar:
        batch = batch.to(run.device)
        with run.accelerator.autocast():
            embeddings = batch_embeddings(run, "val", batch)
            components, present = decode_components(run.model, embeddings, batch, config.point_merge)
            losses = mask_loss(merge_components(components), batch.target, batch.weight, config)
        has = present.any(1)
        loss_sum += float(losses[has].sum())
        loss_n += int(has.sum())
        for b, position in enumerate(batch.positions):
            pred = native_prediction(components[b].float(), present[b], batch.shapes[b], batch.resized[b], run.image_size)
            label = torch.from_numpy(batch.label[b]).to(run.device)
            valid = torch.from_numpy(batch.valid[b]).to(run.device)
            rows.append(image_row(prepared[position].name, confusion(pred, label, valid)))
    if run.accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
        sums = run.accelerator.reduce(torch.tensor([loss_sum, float(loss_n)], device=run.device), "sum").tolist()
        loss_sum, loss_n = sums[0], int(sums[1])
    return (loss_sum / loss_n if loss_n else None), rows


__all__ = ["Run", "prepare_split", "train_epoch", "validate", "batch_embeddings", "epoch_batches", "steps_per_epoch"]
