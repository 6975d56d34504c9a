"""Tiny random-weight models for tests: SAM (the architecture of ViT-B SAM, a few thousand times
smaller), SAM-HQ (the same encoder and decoder plus HQ's), SAM 2 (a 6-block Hiera) and SAM 3 (a
2-block ViT, a 1-layer CLIP text encoder and a tiny CLIP tokenizer built here), each of every
supported family (:mod:`samgeo_pipeline.models`).

Its encoder works and its masks are decided: transformers' default init (vision
``initializer_range`` 1e-10, other weights N(0, 0.02²)) gives image embeddings of ~1e-10 and mask
logits of ~1e-4, so the masks would depend on rounding and the prompts alone. Here every weight is
drawn at a trained model's scale instead, from a seeded generator (the same seed gives the same
weights): linear and convolution weights variance-preserving (N(0, 1/fan_in)), embeddings and
prompt tokens N(0, 1), biases and the absolute / relative position tables (which transformers
zero-initialises) N(0, 0.1²); LayerNorms keep 1 / 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPTokenizer,
    Sam2Config,
    Sam2Model,
    Sam3Config,
    Sam3Model,
    SamConfig,
    SamHQConfig,
    SamHQModel,
    SamModel,
)

SMALL_STD = 0.1


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


def tiny_sam_hq_config(image_size: int = 256) -> SamHQConfig:
    """:func:`tiny_sam_config`'s SAM with SAM-HQ's decoder (``vit_dim``: the encoder's width)."""
    sam = tiny_sam_config(image_size)
    return SamHQConfig(
        vision_config=sam.vision_config.to_dict(),
        prompt_encoder_config=sam.prompt_encoder_config.to_dict(),
        mask_decoder_config={**sam.mask_decoder_config.to_dict(), "vit_dim": sam.vision_config.hidden_size},
    )


def tiny_sam2_config(image_size: int = 256) -> Sam2Config:
    """A Sam2Config with a 6-block, 4-stage Hiera (16 to 128 wide; one global block, not at a stage start)
    and a 32-wide neck and decoder (``image_size`` px input, feature levels at 1/4, 1/8, 1/16)."""
    s = image_size
    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 16,
                "num_attention_heads": 1,
                "image_size": [s, s],
                "blocks_per_stage": [1, 2, 2, 1],
                "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 2, 2],
                "window_size_per_stage": [4, 4, 4, 4],
                "global_attention_blocks": [4],
                "window_positional_embedding_background_size": [4, 4],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": s, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    )


def tiny_sam3_config(image_size: int = 256) -> Sam3Config:
    """A Sam3Config with a 2-block, 32-wide ViT (patch 14, one global block; input ``image_size``
    rounded down to a multiple of 14), a 1-layer 32-wide CLIP text encoder over
    :func:`tiny_clip_tokenizer`'s vocabulary and 1-layer DETR encoder / decoder with 8 queries."""
    s = image_size // 14 * 14
    tokens = s // 14
    layer = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    vocab = len(tiny_clip_tokenizer())
    return Sam3Config(
        vision_config={
            "backbone_config": {"model_type": "sam3_vit_model", **layer, "num_hidden_layers": 2, "image_size": s,
                                "patch_size": 14, "window_size": 3, "global_attn_indexes": [1],
                                "pretrain_image_size": 14 * 3},  # fmt: skip
            "fpn_hidden_size": 32,
            "backbone_feature_sizes": [[tokens * 4] * 2, [tokens * 2] * 2, [tokens] * 2],
        },
        text_config={**layer, "vocab_size": vocab, "projection_dim": 32, "num_hidden_layers": 1,
                     "max_position_embeddings": 32, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
                     "pad_token_id": vocab - 1},  # fmt: skip
        geometry_encoder_config={**layer, "num_layers": 1},
        detr_encoder_config={**layer, "num_layers": 1},
        detr_decoder_config={**layer, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer over single letters (``a`` .. ``z``, each also word-final) and a few merges
    (``wa``, ``ter``, ``ri``), built here, never downloaded: SAM 3's ``Sam3Processor`` uses a CLIP tokenizer."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({f"{c}</w>": len(letters) + i for i, c in enumerate(letters)})
    merges = [("w", "a"), ("t", "e"), ("te", "r</w>"), ("r", "i")]
    for merge in merges:
        vocab["".join(merge)] = len(vocab)
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=merges)


#: family (``model_type``) -> (config builder, model class)
FAMILY_BUILDERS = {
    "sam": (tiny_sam_config, SamModel),
    "sam_hq": (tiny_sam_hq_config, SamHQModel),
    "sam2": (tiny_sam2_config, Sam2Model),
    "sam3": (tiny_sam3_config, Sam3Model),
}


def tiny_sam(image_size: int = 256, seed: int = 0, family: str = "sam") -> torch.nn.Module:
    """A tiny model of ``family`` in eval mode with seeded weights at a trained model's scale (see the module doc).

    The global torch generator is left as it was.
    """
    make_config, model_class = FAMILY_BUILDERS[family]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(make_config(image_size))
        with torch.no_grad():
            for module in model.modules():
                _draw(module)
            for name, tensor in model.vision_encoder.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("pos_embed") or "rel_pos" in name:
                    tensor.normal_(0.0, SMALL_STD)
    return model.eval()


def _draw(module: torch.nn.Module) -> None:
    """Redraw one module's own weights (see the module doc)."""
    if isinstance(module, torch.nn.Embedding):
        module.weight.normal_(0.0, 1.0)
    elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        weight = module.weight
        # ConvTranspose2d stores (in, out, k, k); with stride = kernel each output sees `in` inputs
        fan_in = weight.shape[0] if isinstance(module, torch.nn.ConvTranspose2d) else weight[0].numel()
        weight.normal_(0.0, fan_in**-0.5)
        if module.bias is not None:
            module.bias.normal_(0.0, SMALL_STD)


def save_tiny_sam(path: Path, image_size: int = 256, seed: int = 0, family: str = "sam") -> Path:
    """:func:`tiny_sam` saved with ``save_pretrained`` to ``path`` (SAM 3: with :func:`tiny_clip_tokenizer`)."""
    tiny_sam(image_size, seed, family).save_pretrained(path)
    if family == "sam3":
        tiny_clip_tokenizer().save_pretrained(path)
    return path
