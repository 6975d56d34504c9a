"""Differentiable SAM decoding of prompt batches, merged the way the segment pipeline merges.

:class:`~samgeo_pipeline.sam.SamPredictor` decodes one tile under ``inference_mode``; here the same
computation runs batched and with gradients: embeddings ``(B, C, e, e)`` and padded prompt rows
``(B, P, ...)`` give low-resolution logits per row, rows are merged per component (joint: the row;
mean: mean of the component's rows; best: the row with the highest predicted IoU), and components
are merged per image by their maximum. Padding rows (group -1) never contribute.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samgeo_pipeline.finetune.samples import PromptBatch
from samgeo_pipeline.sam import preprocess_torch

#: Logit of "no component here" (finite, so that losses and autocast stay finite).
NO_MASK_LOGIT = -1.0e4


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
    pixels = [
        preprocess_torch(torch.from_numpy(np.ascontiguousarray(img))[None].to(device), image_size)[0] for img in images
    ]
    with torch.no_grad():
        return model.get_image_embeddings(torch.cat(pixels))


def decode_components(
    model: torch.nn.Module, embeddings: torch.Tensor, batch: PromptBatch, merge: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution logits of each component of each image.

    Args:
        model: a ``SamModel`` (possibly wrapped for distributed training).
        embeddings: ``(B, C, e, e)`` image embeddings.
        batch: prompt rows on the model's device.
        merge: ``joint``, ``mean`` or ``best`` (see module docstring).

    Returns:
        ``(components, present)``: ``(B, K, m, m)`` logits in SAM's mask frame (``NO_MASK_LOGIT``
        for absent components) and ``bool (B, K)`` which components exist.
    """
    kwargs: dict[str, torch.Tensor] = {}
    if batch.boxes is not None:
        kwargs["input_boxes"] = batch.boxes
    else:
        kwargs["input_points"] = batch.points  # type: ignore[assignment]
        kwargs["input_labels"] = batch.labels  # type: ignore[assignment]
    out = model(image_embeddings=embeddings, multimask_output=False, **kwargs)
    rows = out.pred_masks[:, :, 0]  # (B, P, m, m)
    groups = batch.groups
    n_comp = max(1, int(groups.max().item()) + 1)
    member = F.one_hot(groups.clamp(min=0), n_comp).to(rows.dtype) * (groups >= 0)[..., None].to(rows.dtype)  # (B, P, K)
    count = member.sum(1)  # (B, K)
    present = count > 0
    if merge == "best":
        iou = out.iou_scores[:, :, 0].float()  # (B, P)
        score = torch.where(member > 0, iou[..., None], torch.full_like(member, -torch.inf, dtype=torch.float32))
        best = score.argmax(1)  # (B, K): row of each component
        index = best[..., None, None].expand(-1, -1, *rows.shape[-2:])
        components = torch.gather(rows, 1, index)
    else:  # joint (one row per component) or mean
        components = torch.einsum("bpk,bphw->bkhw", member, rows) / count.clamp(min=1)[..., None, None]
    components = components.masked_fill(~present[..., None, None], NO_MASK_LOGIT)
    return components, present


def merge_components(components: torch.Tensor) -> torch.Tensor:
    """``(B, K, m, m)`` -> ``(B, 1, m, m)``: the union (maximum) of an image's components."""
    return components.max(1, keepdim=True).values


def upsample_logits(low_res: torch.Tensor, shape: tuple[int, int], resized: tuple[int, int], image_size: int) -> torch.Tensor:
    """``(n, m, m)`` mask-frame logits -> ``(n, rows, cols)`` in the image frame (as SamPredictor does)."""
    x = F.interpolate(low_res[:, None].float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : resized[0], : resized[1]]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]


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
    logits = upsample_logits(components[present], shape, resized, image_size)
    return logits.max(0).values > 0


__all__ = ["embed_images", "decode_components", "merge_components", "upsample_logits", "native_prediction", "NO_MASK_LOGIT"]
