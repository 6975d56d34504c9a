"""A tiny random-weight SAM for tests: same architecture as ViT-B SAM, a few thousand times smaller."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import SamConfig, SamModel


def tiny_sam_config(image_size: int = 256) -> SamConfig:
    """A SamConfig with a 2-layer, 32-wide vision encoder and a small decoder (image_size px input)."""
    return SamConfig(
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "mlp_dim": 64,
            "output_channels": 32,
            "image_size": image_size,
            "patch_size": 16,
            "window_size": 4,
            "global_attn_indexes": [1],
            "num_pos_feats": 16,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": image_size, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    )


def save_tiny_sam(path: Path, image_size: int = 256, seed: int = 0) -> Path:
    """Build a tiny SAM with seeded random weights and ``save_pretrained`` it to ``path``."""
    torch.manual_seed(seed)
    SamModel(tiny_sam_config(image_size)).save_pretrained(path)
    return path
