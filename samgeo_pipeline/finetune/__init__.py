"""Fine-tuning and evaluation of SAM on labelled water imagery.

Stages, one module each: :mod:`config` (:class:`FinetuneConfig`), :mod:`sources` and :mod:`ortho`
(labelled samples from Hugging Face datasets, chip folders, orthoimages), :mod:`samples` (packed
samples, per-epoch prompts, batches), :mod:`cache` (image embeddings), :mod:`decode` (batched,
differentiable prompt decoding), :mod:`losses`, :mod:`metrics`, :mod:`loops` and :mod:`train`
(:func:`finetune`), :mod:`checkpoint`, :mod:`curves`, :mod:`evaluate` (:func:`evaluate`), and
:mod:`cli` (the ``finetune`` and ``evaluate`` subcommands). Importing this package is cheap: the
heavy modules load when their functions are first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from samgeo_pipeline.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    from samgeo_pipeline.finetune.evaluate import EvaluationResult, evaluate
    from samgeo_pipeline.finetune.train import FinetuneResult, finetune

_LAZY = {
    "finetune": "samgeo_pipeline.finetune.train",
    "FinetuneResult": "samgeo_pipeline.finetune.train",
    "evaluate": "samgeo_pipeline.finetune.evaluate",
    "EvaluationResult": "samgeo_pipeline.finetune.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samgeo_pipeline.finetune' has no attribute {name!r}")


__all__ = ["FinetuneConfig", "finetune", "FinetuneResult", "evaluate", "EvaluationResult"]
