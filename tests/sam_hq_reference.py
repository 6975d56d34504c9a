"""The authors' ``segment_anything_hq`` (PyPI ``segment-anything-hq``, SysCV) as a reference for the
project's SAM-HQ path (test-only helpers, used by ``tests/models/test_sam_hq.py``).

The package is not a dependency: the parity test skips unless it is importable (install it
apart, e.g. ``pip install --no-deps --target DIR segment-anything-hq`` and put ``DIR`` on
``PYTHONPATH`` for that test). Importing it needs two packages that are not installed here:
torchvision (``utils/transforms.py``, ``automatic_mask_generator.py``: the stand-in of
:mod:`tests.sam_reference` is used) and timm (``modeling/tiny_vit_sam.py``, the TinyViT encoder
that is not used here: names that raise if called). Both stand-ins are in ``sys.modules`` only
during the import.

:func:`build_reference_sam_hq` builds :func:`tests.sam_reference.build_reference_sam`'s small SAM
geometry (1024 px input, 2-block 32-wide ViT, 32-wide decoder) with SAM-HQ's ``MaskDecoderHQ``
and seeded random weights at a realistic scale; :func:`convert_to_hf` converts it to a
transformers ``SamHQModel`` (SAM's key mapping plus the HQ modules' names, found by comparing the
two state dicts; loaded with ``strict=True``, so no weight is left random).
"""

from __future__ import annotations

import math
import sys
import types
from functools import partial

import torch

from tests.sam_reference import (
    DECODER_HEADS,
    DECODER_MLP,
    ENCODER_DEPTH,
    ENCODER_HEADS,
    ENCODER_MLP,
    GLOBAL_ATTN_INDEXES,
    IMAGE_SIZE,
    MASK_IN_CHANS,
    PATCH_SIZE,
    WIDTH,
    WINDOW_SIZE,
    _fake_torchvision_modules,
    _real_torchvision_imports,
    convert_state_dict,
    hf_config,
)

#: SAM-HQ's own decoder modules: reference name -> transformers name (after SAM's mapping).
HQ_KEY_REPLACEMENTS = (
    ("compress_vit_feat.0", "compress_vit_conv1"),
    ("compress_vit_feat.1", "compress_vit_norm"),
    ("compress_vit_feat.3", "compress_vit_conv2"),
    ("embedding_encoder.0", "encoder_conv1"),
    ("embedding_encoder.1", "encoder_norm"),
    ("embedding_encoder.3", "encoder_conv2"),
    ("embedding_maskfeature.0", "mask_conv1"),
    ("embedding_maskfeature.1", "mask_norm"),
    ("embedding_maskfeature.3", "mask_conv2"),
    ("hf_mlp.layers.0", "hq_mask_mlp.proj_in"),
    ("hf_mlp.layers.1", "hq_mask_mlp.layers.0"),
    ("hf_mlp.layers.2", "hq_mask_mlp.proj_out"),
    ("hf_token", "hq_token"),
)
_NORMS = ("norm", "output_upscaling.1", "mask_downscaling.1", "mask_downscaling.4", "neck.1", "neck.3",
          "compress_vit_feat.1", "embedding_encoder.1", "embedding_maskfeature.1")  # fmt: skip
_TRANSPOSED = ("output_upscaling", "compress_vit_feat", "embedding_encoder")  # ConvTranspose2d: (in, out, k, k)
_EMBEDDINGS = ("point_embeddings", "not_a_point_embed", "no_mask_embed", "mask_tokens", "iou_token", "hf_token")


def _fake_timm_modules() -> dict[str, types.ModuleType]:
    names = ("timm", "timm.models", "timm.models.layers", "timm.models.registry")
    modules = {name: types.ModuleType(name) for name in names}

    def unused(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("fake timm: TinyViT is not used by these tests")

    class DropPath(torch.nn.Module):  # subclassed by tiny_vit_sam.py at import
        def __init__(self, *args: object, **kwargs: object) -> None:
            unused()

    layers = modules["timm.models.layers"]
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, unused, unused
    modules["timm.models.registry"].register_model = lambda fn: fn
    return modules


def import_segment_anything_hq():
    """``segment_anything_hq``, imported over the torchvision / timm stand-ins where those are missing.

    Raises:
        ImportError: segment_anything_hq is not installed.
    """
    import importlib.util

    if sys.modules.get("segment_anything_hq") is not None:
        return sys.modules["segment_anything_hq"]
    if importlib.util.find_spec("segment_anything_hq") is None:
        raise ImportError("segment_anything_hq is not installed (pip install --no-deps segment-anything-hq==0.3)")
    import transformers  # noqa: F401 - settles its optional-dependency checks before the stand-ins exist

    fake = {} if _real_torchvision_imports() else _fake_torchvision_modules()
    if importlib.util.find_spec("timm") is None:
        fake.update(_fake_timm_modules())
    saved = {name: module for name, module in sys.modules.items() if name in fake}
    sys.modules.update(fake)
    try:
        import segment_anything_hq
    finally:
        for name in fake:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return segment_anything_hq


def build_reference_sam_hq(seed: int = 0):
    """A small ``segment_anything_hq`` SAM with ``MaskDecoderHQ`` and seeded random weights (module doc)."""
    import_segment_anything_hq()
    from segment_anything_hq.modeling import ImageEncoderViT, MaskDecoderHQ, PromptEncoder, Sam, TwoWayTransformer

    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMAGE_SIZE, patch_size=PATCH_SIZE, embed_dim=WIDTH, depth=ENCODER_DEPTH, num_heads=ENCODER_HEADS,
            mlp_ratio=ENCODER_MLP / WIDTH, out_chans=WIDTH, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=WINDOW_SIZE,
            global_attn_indexes=GLOBAL_ATTN_INDEXES,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=WIDTH, image_embedding_size=(IMAGE_SIZE // PATCH_SIZE, IMAGE_SIZE // PATCH_SIZE),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=MASK_IN_CHANS,
        ),
        mask_decoder=MaskDecoderHQ(
            transformer_dim=WIDTH,
            transformer=TwoWayTransformer(depth=2, embedding_dim=WIDTH, mlp_dim=DECODER_MLP, num_heads=DECODER_HEADS),
            num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=WIDTH, vit_dim=WIDTH,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sam.state_dict(keep_vars=True).items():
            if name in ("pixel_mean", "pixel_std"):
                continue
            tensor.copy_(_draw(name, tensor.shape, generator))
    return sam.eval()


def _draw(name: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """One tensor at a trained model's scale: see :func:`tests.sam_reference.build_reference_sam`."""
    noise = torch.randn(shape, generator=generator)
    if name.endswith("positional_encoding_gaussian_matrix"):
        return noise
    if "pos_embed" in name or "rel_pos" in name:
        return 0.1 * noise
    if any(k in name for k in _NORMS):
        return (1.0 + 0.1 * noise) if name.endswith("weight") else 0.1 * noise
    if name.endswith("bias"):
        return 0.1 * noise
    if len(shape) >= 2 and not any(k in name for k in _EMBEDDINGS):
        fan_in = shape[0] if any(k in name for k in _TRANSPOSED) else math.prod(shape[1:])
        return noise / math.sqrt(fan_in)
    return noise


def convert_to_hf(sam) -> torch.nn.Module:
    """A transformers ``SamHQModel`` holding ``sam``'s weights (strict load: every key mapped, none left)."""
    from transformers import SamHQConfig, SamHQModel

    converted = {}
    for key, value in convert_state_dict(sam.state_dict()).items():
        for old, new in HQ_KEY_REPLACEMENTS:
            key = key.replace(old, new)
        converted[key] = value.detach().clone()
    sam_config = hf_config()
    config = SamHQConfig(
        vision_config=sam_config.vision_config.to_dict(),
        prompt_encoder_config=sam_config.prompt_encoder_config.to_dict(),
        mask_decoder_config={**sam_config.mask_decoder_config.to_dict(), "vit_dim": WIDTH},
    )
    model = SamHQModel(config).eval()
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    return model
