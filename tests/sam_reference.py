"""Meta's ``segment_anything`` as a reference for the project's SAM path (test-only helpers).

``segment_anything`` imports two things from torchvision at import time
(``transforms.functional.resize / to_pil_image`` in ``utils/transforms.py`` and ``ops.boxes`` in
``automatic_mask_generator.py``). torchvision does not install beside the CPU torch used here, so
when it is not importable :func:`import_segment_anything` imports it over a minimal stand-in
(in ``sys.modules`` only during that import): ``to_pil_image`` and ``resize`` do what torchvision
does for the inputs ``ResizeLongestSide.apply_image`` passes (a uint8 HWC array, then a PIL image
and an ``(h, w)`` size), and the ``ops.boxes`` functions raise (only the automatic mask generator
uses them).

What torchvision does on a PIL image (``transforms/functional.py`` and ``_functional_pil.py``):
``resize(img, size)`` with ``interpolation=InterpolationMode.BILINEAR`` (the default) returns the
image itself when ``[h, w] == size``, else ``img.resize((w, h), PIL.Image.BILINEAR)``; the
``antialias`` argument is ignored for PIL input (PIL's filter always widens its support when it
downscales). ``to_pil_image`` turns a uint8 ``(h, w, 3)`` array into an ``RGB`` image (a CHW tensor
is permuted to HWC first; a float tensor is multiplied by 255 and cast to uint8).

:func:`build_reference_sam` builds a small SAM with segment_anything's own classes (real
``img_size=1024`` / ``patch_size=16`` geometry, a 2-block 32-wide ViT, a 32-wide decoder), fills
it with seeded random weights at a realistic scale, and :func:`convert_to_hf` converts it to a
transformers ``SamModel`` with the key mapping of transformers' ``convert_sam_to_hf.py``, loaded
with ``strict=True`` so that no weight is silently left random.
"""

from __future__ import annotations

import math
import re
import sys
import types
from functools import partial

import numpy as np
import torch
from PIL import Image

IMAGE_SIZE = 1024
PATCH_SIZE = 16
WIDTH = 32  # encoder width and prompt/decoder width (ViT-B: 768 and 256)
ENCODER_DEPTH = 2
ENCODER_HEADS = 2
ENCODER_MLP = 64
GLOBAL_ATTN_INDEXES = (1,)
WINDOW_SIZE = 14  # as in every released SAM: 64 tokens padded to 70 for windows
MASK_IN_CHANS = 4
DECODER_MLP = 64
DECODER_HEADS = 2


# --------------------------------------------------------------------------- fake torchvision
def _to_pil_image(pic, mode=None):
    """torchvision's ``to_pil_image`` for uint8 HWC arrays and uint8/float CHW tensors."""
    if isinstance(pic, torch.Tensor):
        if pic.ndim == 2:
            pic = pic[None]
        if pic.is_floating_point() and mode != "F":
            pic = pic.mul(255).byte()
        array = pic.permute(1, 2, 0).cpu().numpy()
    elif isinstance(pic, np.ndarray):
        array = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        raise TypeError(f"pic should be a Tensor or ndarray, got {type(pic)}")
    if array.ndim != 3 or array.dtype != np.uint8 or array.shape[-1] not in (1, 3, 4):
        raise NotImplementedError(f"fake torchvision: to_pil_image of {array.dtype} {array.shape}")
    if mode not in (None, {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]]):
        raise NotImplementedError(f"fake torchvision: to_pil_image mode {mode!r}")
    return Image.fromarray(np.ascontiguousarray(array[:, :, 0] if array.shape[-1] == 1 else array))


def _resize(img, size, interpolation="bilinear", max_size=None, antialias=True):
    """torchvision's ``resize`` for a PIL image with bilinear interpolation (the default)."""
    if not isinstance(img, Image.Image):
        raise NotImplementedError("fake torchvision: resize supports PIL images only")
    if str(getattr(interpolation, "value", interpolation)).lower() not in ("bilinear", str(int(Image.BILINEAR))):
        raise NotImplementedError(f"fake torchvision: interpolation {interpolation!r}")
    if max_size is not None:
        raise NotImplementedError("fake torchvision: max_size")
    width, height = img.size
    if isinstance(size, int) or len(size) == 1:  # shorter side -> size, as _compute_resized_output_size
        short = size if isinstance(size, int) else size[0]
        if width <= height:
            output = [int(short * height / width), short]
        else:
            output = [short, int(short * width / height)]
    else:
        output = [int(size[0]), int(size[1])]
    if [height, width] == output:
        return img
    return img.resize((output[1], output[0]), Image.BILINEAR)


def _unused(name):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"fake torchvision: {name} is not provided (automatic mask generator only)")

    return fail


def _fake_torchvision_modules() -> dict[str, types.ModuleType]:
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    functional.resize, functional.to_pil_image = _resize, _to_pil_image
    boxes.batched_nms, boxes.box_area = _unused("batched_nms"), _unused("box_area")
    ops.batched_nms, ops.box_area = boxes.batched_nms, boxes.box_area
    root.transforms, transforms.functional, root.ops, ops.boxes = transforms, functional, ops, boxes
    return {m.__name__: m for m in (root, transforms, functional, ops, boxes)}


def _real_torchvision_imports() -> bool:
    try:
        import torchvision.ops.boxes
        import torchvision.transforms.functional  # noqa: F401 - only to see whether it imports

        return True
    except Exception:  # noqa: BLE001 - absent, or present but built for another torch
        return False


def import_segment_anything():
    """``segment_anything``, importing it over a torchvision stand-in when torchvision is missing.

    The stand-in is in ``sys.modules`` only while segment_anything is imported (its modules keep
    the functions they imported): left there, it would make transformers believe torchvision is
    installed. Raises ImportError when segment_anything is not installed.
    """
    import importlib.util

    if sys.modules.get("segment_anything") is not None:
        return sys.modules["segment_anything"]
    try:
        spec = importlib.util.find_spec("segment_anything")
    except ValueError:  # sys.modules["segment_anything"] is None: import blocked
        spec = None
    if spec is None:
        raise ImportError("segment_anything is not installed (pip install segment-anything==1.0)")
    import transformers  # noqa: F401 - settles its optional-dependency checks before the stand-in exists

    if _real_torchvision_imports():
        import segment_anything

        return segment_anything
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "torchvision"}
    for name in saved:
        del sys.modules[name]
    fake = _fake_torchvision_modules()
    sys.modules.update(fake)
    try:
        import segment_anything
        import segment_anything.utils.transforms as sa_transforms

        assert sa_transforms.resize is _resize and sa_transforms.to_pil_image is _to_pil_image
    finally:
        for name in fake:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return segment_anything


# --------------------------------------------------------------------------- reference model
def build_reference_sam(seed: int = 0):
    """A small ``segment_anything.modeling.Sam`` with seeded random weights at a realistic scale.

    Geometry as released SAM (1024 px input, 16 px patches, 64² embedding, window 14, relative
    positions); widths and depths are small. PyTorch's default init leaves LayerNorms at 1/0 and
    SAM zero-initialises the absolute and relative position tables, which would hide a swapped
    mapping: every tensor is drawn afresh (weights ~ N(0, 1/fan_in), biases and position tables
    ~ N(0, 0.1²)-ish, LayerNorm scales around 1, embeddings ~ N(0, 1)).
    """
    import_segment_anything()
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            embed_dim=WIDTH,
            depth=ENCODER_DEPTH,
            num_heads=ENCODER_HEADS,
            mlp_ratio=ENCODER_MLP / WIDTH,
            out_chans=WIDTH,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=WINDOW_SIZE,
            global_attn_indexes=GLOBAL_ATTN_INDEXES,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=WIDTH,
            image_embedding_size=(IMAGE_SIZE // PATCH_SIZE, IMAGE_SIZE // PATCH_SIZE),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=MASK_IN_CHANS,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=WIDTH,
            transformer=TwoWayTransformer(depth=2, embedding_dim=WIDTH, mlp_dim=DECODER_MLP, num_heads=DECODER_HEADS),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=WIDTH,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sam.state_dict(keep_vars=True).items():
            if name in ("pixel_mean", "pixel_std"):
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("positional_encoding_gaussian_matrix"):
                value = noise  # SAM's PositionEmbeddingRandom: scale 1 * randn
            elif "pos_embed" in name or "rel_pos" in name:
                value = 0.1 * noise
            elif ("norm" in name or "output_upscaling.1" in name or "mask_downscaling.1" in name
                  or "mask_downscaling.4" in name or "neck.1" in name or "neck.3" in name):
                value = (1.0 + 0.1 * noise) if name.endswith("weight") else 0.1 * noise
            elif name.endswith("bias"):
                value = 0.1 * noise
            elif tensor.ndim >= 2 and not _is_embedding(name):
                # weights: variance-preserving; ConvTranspose2d stores (in, out, k, k)
                fan_in = tensor.shape[0] if "output_upscaling" in name else math.prod(tensor.shape[1:])
                value = noise / math.sqrt(fan_in)
            else:
                value = noise
            tensor.copy_(value)
    return sam.eval()


def _is_embedding(name: str) -> bool:
    embeddings = ("point_embeddings", "not_a_point_embed", "no_mask_embed", "mask_tokens", "iou_token")
    return any(k in name for k in embeddings)


# --------------------------------------------------------------------------- conversion
#: Ordered substring replacements of transformers' ``convert_sam_to_hf.py`` (``KEYS_TO_MODIFY_MAPPING``).
KEY_REPLACEMENTS = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
)
_HYPERNETWORK = re.compile(r".*\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+).*")
_HYPERNETWORK_LAYERS = {0: ("layers.0", "proj_in"), 1: ("layers.1", "layers.0"), 2: ("layers.2", "proj_out")}


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """segment_anything keys -> transformers ``SamModel`` keys (convert_sam_to_hf.py's ``replace_keys``).

    Every key goes through the substring replacements in order; the hypernetwork MLPs' layer
    ``i`` becomes ``proj_in`` / ``layers.0`` / ``proj_out``; the prompt encoder's random Fourier
    matrix is also the model-level ``shared_image_embedding`` (transformers ties the two);
    ``pixel_mean`` / ``pixel_std`` are dropped (the processor normalises).
    """
    converted = {}
    for key, value in state_dict.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        for old, new in KEY_REPLACEMENTS:
            if old in key:
                key = key.replace(old, new)
        match = _HYPERNETWORK.match(key)
        if match:
            old, new = _HYPERNETWORK_LAYERS[int(match.group(2))]
            key = key.replace(old, new)
        converted[key] = value
    converted["shared_image_embedding.positional_embedding"] = converted[
        "prompt_encoder.shared_embedding.positional_embedding"
    ]
    return converted


def hf_config():
    """The transformers ``SamConfig`` equivalent to :func:`build_reference_sam`'s model."""
    from transformers import SamConfig

    return SamConfig(
        vision_config={
            "hidden_size": WIDTH,
            "num_hidden_layers": ENCODER_DEPTH,
            "num_attention_heads": ENCODER_HEADS,
            "mlp_dim": ENCODER_MLP,
            "output_channels": WIDTH,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "window_size": WINDOW_SIZE,
            "global_attn_indexes": list(GLOBAL_ATTN_INDEXES),
            "num_pos_feats": WIDTH // 2,
        },
        prompt_encoder_config={
            "hidden_size": WIDTH,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "mask_input_channels": MASK_IN_CHANS,
        },
        mask_decoder_config={
            "hidden_size": WIDTH,
            "mlp_dim": DECODER_MLP,
            "num_attention_heads": DECODER_HEADS,
            "num_hidden_layers": 2,
            "iou_head_hidden_dim": WIDTH,
            "iou_head_depth": 3,
            "num_multimask_outputs": 3,
        },
    )


def convert_to_hf(sam) -> torch.nn.Module:
    """A transformers ``SamModel`` holding ``sam``'s weights (strict load: every key mapped, none left)."""
    from transformers import SamModel

    model = SamModel(hf_config()).eval()
    state = {k: v.detach().clone() for k, v in convert_state_dict(sam.state_dict()).items()}
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    return model
