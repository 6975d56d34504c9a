"""The pieces a fine-tuning run is set up with: the accelerator, the family check, the frozen model,
the learning-rate schedule and the embeddings' dtype."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from samgeo_pipeline.errors import ConfigError
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.setup import (
    check_finetunable,
    embedding_dtype,
    freeze_for_finetuning,
    lr_factor,
    make_accelerator,
)
from samgeo_pipeline.sam.predictor import ModelSource
from tests.tiny_sam import tiny_sam


def test_lr_schedule() -> None:
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "linear") == pytest.approx(0.0)
    assert lr_factor(50, 100, 0, "constant") == 1.0


@pytest.mark.parametrize("family", ["sam_hq", "sam2", "sam3"])
def test_only_sam_is_finetunable(family: str) -> None:
    check_finetunable(ModelSource("facebook/sam-vit-base", "hub cache", "sam"))
    with pytest.raises(ConfigError, match=r"^some/model: fine-tuning does not support .* models yet \(only SAM: .*"
                                          r"evaluate this model with `evaluate`"):
        check_finetunable(ModelSource("some/model", "hub cache", family))


def test_only_the_decoder_trains_and_the_prompt_encoder_when_asked() -> None:
    model = tiny_sam(128).train()  # as a model left in training mode
    trainable = freeze_for_finetuning(model, train_prompt_encoder=False)
    assert {id(p) for p in trainable} == {id(p) for p in model.mask_decoder.parameters()}
    assert model.mask_decoder.training and not model.vision_encoder.training and not model.prompt_encoder.training
    with_prompt = freeze_for_finetuning(model, train_prompt_encoder=True)
    expected = [*model.mask_decoder.parameters(), *model.prompt_encoder.parameters()]
    assert {id(p) for p in with_prompt} == {id(p) for p in expected} and model.prompt_encoder.training
    assert not any(p.requires_grad for p in model.vision_encoder.parameters())


@pytest.mark.parametrize(
    ("cache_dtype", "mixed", "expected"),
    [
        ("fp16", "bf16", torch.float16),  # explicit wins
        ("auto", "bf16", torch.bfloat16),
        ("auto", "fp16", torch.float16),
        ("auto", "no", torch.float32),
    ],
)
def test_embedding_dtype(cache_dtype: str, mixed: str, expected: torch.dtype) -> None:
    config = FinetuneConfig().merged({"cache_dtype": cache_dtype})
    assert embedding_dtype(config, SimpleNamespace(mixed_precision=mixed)) == expected


def test_a_cpu_accelerator_runs_in_full_precision() -> None:
    accelerator = make_accelerator(FinetuneConfig().merged({"device": "cpu", "precision": "bf16"}))
    assert accelerator.device.type == "cpu" and str(accelerator.mixed_precision) == "no"
