"""SAM-HQ's mask decoder as the authors' ``MaskDecoderHQ`` computes it (transformers 5.24 differs).

transformers' ``SamHQMaskDecoder.forward`` (5.24) drops the two-way transformer's updated image
tokens: the masks are built from the image embedding as it was *before* the transformer, and
reshaped from ``(C, H, W)`` as if it were ``(C, W, H)`` (transposed on a square grid). SAM's own
decoder in transformers and the authors' SAM-HQ both use the transformer's output; with the same
weights, transformers' SAM-HQ masks agreed with the authors' at IoU 0.72 on a test tile
(``tests/models/test_sam_hq.py``). :func:`use_reference_decoder` replaces the method on one
model's decoder with :func:`_forward`, which computes what ``MaskDecoderHQ`` does with the
modules transformers holds (single-mask output; ``hq_token_only`` as given):

* HQ features: ``encoder_*`` convs of the image embedding plus ``compress_vit_*`` convs of the
  first global block's output (``intermediate_embeddings[0]``);
* tokens (IoU, SAM's mask tokens, the HQ token, then the prompt's) through the two-way transformer
  with the image embedding plus the dense prompt;
* SAM's upscaled image tokens, and for the HQ token those through ``mask_*`` convs plus the HQ
  features; each mask token's MLP output times its features;
* the first mask token's mask and IoU, plus the HQ token's mask (``hq_token_only=False``).
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, cast

import torch

if TYPE_CHECKING:
    from transformers.models.sam_hq.modeling_sam_hq import SamHQMaskDecoder


def use_reference_decoder(model: torch.nn.Module) -> None:
    """Make a transformers ``SamHQModel``'s mask decoder compute the authors' masks (module doc)."""
    decoder = cast("SamHQMaskDecoder", model.mask_decoder)
    decoder.forward = types.MethodType(_forward, decoder)  # type: ignore[method-assign]  # this model's decoder only


def _forward(
    self: SamHQMaskDecoder,
    image_embeddings: torch.Tensor,
    image_positional_embeddings: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    multimask_output: bool,
    hq_token_only: bool,
    intermediate_embeddings: list[torch.Tensor] | None = None,
    attention_similarity: torch.Tensor | None = None,
    target_embedding: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``SamHQMaskDecoder.forward`` computing ``MaskDecoderHQ``'s single mask.

    Args:
        image_embeddings: ``(B, C, h, w)``; sparse_prompt_embeddings: ``(B, P, n, C)``;
        dense_prompt_embeddings: ``(B or 1, C, h, w)``; intermediate_embeddings: the encoder's
        global-block outputs, ``(B, h, w, vit_dim)`` each (the first is used).

    Returns:
        ``(masks, iou)``: ``(B, P, 1, 4h, 4w)`` logits and ``(B, P, 1)`` predicted IoU.

    Raises:
        ValueError: ``multimask_output`` (not used by this project), or no intermediate embeddings.
    """
    if multimask_output:
        raise ValueError("this SAM-HQ decoder gives one mask per prompt: call it with multimask_output=False")
    if not intermediate_embeddings:
        raise ValueError("SAM-HQ's decoder needs the encoder's intermediate_embeddings")
    batch, channels, height, width = image_embeddings.shape
    prompts = sparse_prompt_embeddings.shape[1]
    act = self.activation
    hq_features = self.encoder_conv2(act(self.encoder_norm(self.encoder_conv1(image_embeddings))))
    vit = intermediate_embeddings[0].permute(0, 3, 1, 2)
    hq_features = hq_features + self.compress_vit_conv2(act(self.compress_vit_norm(self.compress_vit_conv1(vit))))

    output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hq_token.weight], dim=0)
    tokens = torch.cat([output_tokens.repeat(batch, prompts, 1, 1), sparse_prompt_embeddings], dim=2)
    queries, keys = self.transformer(
        point_embeddings=tokens.to(self.iou_token.weight.dtype),
        image_embeddings=(image_embeddings + dense_prompt_embeddings).repeat_interleave(prompts, 0),
        image_positional_embeddings=image_positional_embeddings.repeat_interleave(prompts, 0),
        attention_similarity=attention_similarity,
        target_embedding=target_embedding,
    )
    updated = keys.transpose(-1, -2).reshape(batch * prompts, channels, height, width)  # (.., h*w, C) -> (.., C, h, w)
    upscaled = act(self.upscale_conv2(act(self.upscale_layer_norm(self.upscale_conv1(updated)))))
    upscaled_hq = self.mask_conv2(act(self.mask_norm(self.mask_conv1(upscaled))))
    upscaled_hq = upscaled_hq + hq_features.repeat_interleave(prompts, 0)

    first, hq = queries[:, :, 1], queries[:, :, self.num_mask_tokens]  # SAM's first mask token, the HQ token
    side = upscaled.shape[-2:]

    def mask(token_out: torch.Tensor, mlp: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
        weights: torch.Tensor = mlp(token_out).reshape(batch * prompts, 1, -1)  # (B*P, 1, C/8)
        return (weights @ features.flatten(2)).reshape(batch, prompts, 1, *side)

    masks = mask(hq, self.hq_mask_mlp, upscaled_hq)
    if not hq_token_only:
        masks = masks + mask(first, self.output_hypernetworks_mlps[0], upscaled)
    iou = self.iou_prediction_head(queries[:, :, 0])[:, :, :1]
    return masks, iou


__all__ = ["use_reference_decoder"]
