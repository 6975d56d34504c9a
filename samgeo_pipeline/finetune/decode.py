"""Differentiable SAM decoding of prompt batches, through the segment pipeline's own decode path.

Images are embedded as :class:`~samgeo_pipeline.sam.predictor.SamPredictor` embeds them
(:mod:`samgeo_pipeline.sam.geometry`), and prompts decoded and merged by the same functions
(:mod:`samgeo_pipeline.sam.decode`: rows grouped by shape, never padded; joint / mean / best per
component), here with gradients. Components are then laid out ``(B, K, m, m)`` for the loss,
absent ones at ``NO_MASK_LOGIT``, and merged per image by their maximum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from samgeo_pipeline.finetune.samples import PromptBatch
from samgeo_pipeline.sam.decode import NO_MASK_LOGIT, component_logits
from samgeo_pipeline.sam.geometry import normalize_and_pad, resize_tile, upsample_masks

if TYPE_CHECKING:
    from transformers import SamModel


def embed_images(model: torch.nn.Module, images: list[np.ndarray], image_size: int, device: torch.device) -> torch.Tensor:
    """Image embeddings of RGB images of any sizes, in one encoder call.

    Args:
        model: a ``SamModel`` (or anything with ``get_image_embeddings``).
        images: ``uint8 (rows, cols, 3)`` each.
        image_size: SAM's input side.
        device: where the model is.

    Returns:
        ``(B, C, e, e)`` embeddings (the encoder's dtype under any active autocast).
    """
    pixels = [normalize_and_pad(torch.from_numpy(resize_tile(img, image_size))[None].to(device), image_size)
              for img in images]  # fmt: skip
    with torch.no_grad():
        embeddings: torch.Tensor = cast("SamModel", model).get_image_embeddings(torch.cat(pixels))
        return embeddings


def decode_components(
    model: torch.nn.Module, embeddings: torch.Tensor, batch: PromptBatch, merge: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution logits of each component of each image.

    Args:
        model: a ``SamModel`` (possibly wrapped for distributed training).
        embeddings: ``(B, C, e, e)`` image embeddings.
        batch: prompt rows on the model's device.
        merge: ``joint``, ``mean`` or ``best`` (:func:`~samgeo_pipeline.sam.decode.merge_rows`).

    Returns:
        ``(components, present)``: ``(B, K, m, m)`` logits in SAM's mask frame (``NO_MASK_LOGIT``
        for absent components) and ``bool (B, K)`` which components exist.
    """
    per_image = component_logits(model, embeddings, batch.rows, merge)
    counts = batch.rows.counts
    width = max(1, *counts)
    side = per_image[0].shape[-1]
    padded = [torch.cat([c, c.new_full((width - len(c), side, side), NO_MASK_LOGIT)]) for c in per_image]
    present = torch.arange(width, device=embeddings.device)[None] < torch.tensor(counts, device=embeddings.device)[:, None]
    return torch.stack(padded), present


def merge_components(components: torch.Tensor) -> torch.Tensor:
    """``(B, K, m, m)`` -> ``(B, 1, m, m)``: the union (maximum) of an image's components."""
    return components.max(1, keepdim=True).values


def native_prediction(
    components: torch.Tensor, present: torch.Tensor, shape: tuple[int, int], resized: tuple[int, int], image_size: int
) -> torch.Tensor:
    """Water mask of one image in its own frame, equal to the segment pipeline's ``logits > 0``.

    Args:
        components: ``(K, m, m)`` one image's component logits; present: ``bool (K,)``.

    Returns:
        ``bool (rows, cols)``; all False when no component is present.
    """
    if not bool(present.any()):
        return torch.zeros(shape, dtype=torch.bool, device=components.device)
    logits = upsample_masks(components[present], shape, resized, image_size)
    return logits.max(0).values > 0


__all__ = ["embed_images", "decode_components", "merge_components", "native_prediction", "NO_MASK_LOGIT"]
