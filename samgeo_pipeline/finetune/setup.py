"""The pieces :func:`~samgeo_pipeline.finetune.train.finetune` sets a run up with: the accelerator,
the family check, the frozen model, the learning-rate schedule and the embeddings' dtype."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from transformers import SamModel

from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.models.families import FAMILIES
from samgeo_pipeline.sam.predictor import ModelSource


def make_accelerator(config: FinetuneConfig) -> Any:
    """An ``accelerate.Accelerator`` for the device and precision options."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    if cpu or config.precision == "fp32":
        mixed = "no"
    elif config.precision in ("bf16", "fp16"):
        mixed = config.precision
    else:
        mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # With multimask_output=False some decoder weights (other mask tokens, IoU head) get no gradient.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=cpu, mixed_precision=mixed, kwargs_handlers=[ddp])


def check_finetunable(source: ModelSource) -> None:
    """Refuse a family whose mask decoder this trainer cannot train (one embedding tensor per image
    is cached and decoded: SAM's; SAM-HQ's and SAM 2's decoders also read other encoder features).

    Raises:
        ConfigError: the family is not trainable here; the message names it and what works.
    """
    family = FAMILIES[source.family]
    if not family.finetune:
        trainable = ", ".join(f.label for f in FAMILIES.values() if f.finetune)
        raise ConfigError(
            f"{source.name}: fine-tuning does not support {family.label} models yet (only {trainable}: its decoder "
            "reads one cached embedding per image); evaluate this model with `evaluate`, or fine-tune a SAM model"
        )


def freeze_for_finetuning(model: torch.nn.Module, train_prompt_encoder: bool) -> list[torch.nn.Parameter]:
    """Freeze all but the mask decoder (and the prompt encoder if asked); return the trainable parameters."""
    model.requires_grad_(False)
    model.eval()
    sam = cast("SamModel", model)
    parts = [sam.mask_decoder] + ([sam.prompt_encoder] if train_prompt_encoder else [])
    for part in parts:
        part.requires_grad_(True)
        part.train()
    # The prompt encoder's positional embedding is a buffer shared with the image encoder: not trained.
    return [p for p in model.parameters() if p.requires_grad]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier at optimiser ``step`` (0-based): linear warm-up, then the decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    return 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def embedding_dtype(config: FinetuneConfig, accelerator: Any) -> torch.dtype:
    """Storage dtype of embeddings: explicit, else the mixed-precision dtype, else float32."""
    explicit = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if config.cache_dtype in explicit:
        return explicit[config.cache_dtype]
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(accelerator.mixed_precision), torch.float32)


__all__ = ["make_accelerator", "check_finetunable", "freeze_for_finetuning", "lr_factor", "embedding_dtype"]
