"""Memory-saving global attention for SAM's vision encoder (query chunks; same results).

transformers' SAM encoder builds, in each global-attention layer, the relative-position bias of
every query against every key as one dense ``(batch, heads, tokens, tokens)`` tensor: for a
1024 px input (64 x 64 = 4096 tokens) and ViT-B's 12 heads, 805 MB per image in float32, before
attention itself. :func:`chunk_global_attention` makes those layers attend a band of query rows
at a time, building the bias of that band only (``rows_per_chunk * 64`` queries against all keys).
Each query's attention is unchanged (softmax is per query), so outputs equal the dense layer's up
to float rounding. Windowed layers (14 x 14 tokens) are left as they are.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionLayer

    class _ChunkedAttention(SamVisionAttention):
        """A global-attention layer as :func:`chunk_global_attention` leaves it."""

        rows_per_chunk: int


def chunk_global_attention(model: torch.nn.Module, rows_per_chunk: int) -> int:
    """Make the global-attention layers of a ``SamModel``'s encoder attend ``rows_per_chunk`` token rows at a time.

    Args:
        model: a transformers ``SamModel`` (or its vision encoder).
        rows_per_chunk: query rows of the token grid per chunk (the grid is image_size / 16 rows).

    Returns:
        How many layers were changed.
    """
    if rows_per_chunk < 1:
        raise ValueError(f"rows_per_chunk must be >= 1, got {rows_per_chunk}")
    changed = 0
    for module in model.modules():
        if type(module).__name__ != "SamVisionLayer":
            continue
        layer = cast("SamVisionLayer", module)
        if layer.window_size == 0 and layer.attn.use_rel_pos:
            attn = cast("_ChunkedAttention", layer.attn)
            attn.forward = types.MethodType(_chunked_forward, attn)  # type: ignore[method-assign]  # this layer only
            attn.rows_per_chunk = rows_per_chunk
            changed += 1
    return changed


def _chunked_forward(
    self: _ChunkedAttention, hidden_states: torch.Tensor, output_attentions: bool = False
) -> tuple[torch.Tensor, None]:
    """``SamVisionAttention.forward`` for a global layer, one band of query rows at a time.

    ``hidden_states``: ``(batch, height, width, hidden)`` tokens; returns ``(output, None)`` with the
    output of the same shape (attention weights are not kept).
    """
    batch, height, width, _ = hidden_states.shape
    heads = self.num_attention_heads
    qkv = self.qkv(hidden_states).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)  # (batch, heads, tokens, head_dim)
    rel_h = self.get_rel_pos(height, height, self.rel_pos_h)  # (height, height, head_dim)
    rel_w = self.get_rel_pos(width, width, self.rel_pos_w)  # (width, width, head_dim)
    outputs = []
    for r0 in range(0, height, self.rows_per_chunk):
        r1 = min(height, r0 + self.rows_per_chunk)
        q = query[:, :, r0 * width : r1 * width]
        grid = q.reshape(batch * heads, r1 - r0, width, -1)
        bias_h = torch.einsum("bhwc,hkc->bhwk", grid, rel_h[r0:r1])  # (b*heads, rows, width, height)
        bias_w = torch.einsum("bhwc,wkc->bhwk", grid, rel_w)  # (b*heads, rows, width, width)
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(batch, heads, (r1 - r0) * width, height * width)
        outputs.append(F.scaled_dot_product_attention(q, key, value, attn_mask=bias.to(q.dtype)))
    out = torch.cat(outputs, dim=2).view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4)
    return self.proj(out.reshape(batch, height, width, -1)), None


__all__ = ["chunk_global_attention"]
