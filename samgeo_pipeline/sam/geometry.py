"""SAM's geometry: the resized size, the uint8 resize, pixel normalisation, prompt scaling, mask upsampling.

Inference (:mod:`samgeo_pipeline.sam.predictor`), fine-tuning and evaluation all use these functions, so a
tile, its prompts and its masks are in the same frames everywhere. They follow Meta's
``segment_anything`` (``ResizeLongestSide`` and ``Sam.postprocess_masks``), which transformers'
``SamImageProcessor`` matches too.

Frames:
    * tile frame: ``(rows, cols)`` pixels of the image as read; prompt coordinates ``(x, y) = (col, row)``.
    * input frame: the tile resized so its longest side is ``image_size`` (``resized`` = ``(rows, cols)``
      after the resize), zero-padded bottom/right to ``image_size`` square.
    * mask frame: SAM's low-resolution masks, the input frame at ``image_size / 4`` a side.

SAM 2 (:mod:`samgeo_pipeline.models.sam2`) sees the whole tile stretched to ``image_size`` square
instead (:func:`square_pixels`: its ``resized`` is ``(image_size, image_size)``, so
:func:`scale_coords` scales each axis by its own factor), and its masks go straight from the mask
frame to the tile (:func:`upsample_square_masks`), as the authors' ``SAM2Transforms`` do.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_shape(shape: tuple[int, int], image_size: int) -> tuple[int, int]:
    """``(rows, cols)`` of a tile of ``shape`` in SAM's input frame: longest side ``image_size``, rounded half up.

    As ``ResizeLongestSide.get_preprocess_shape``: ``int(side * image_size / longest + 0.5)``.
    """
    scale = image_size * 1.0 / max(shape[0], shape[1])
    return int(shape[0] * scale + 0.5), int(shape[1] * scale + 0.5)


def resize_tile(tile: np.ndarray, image_size: int) -> np.ndarray:
    """A ``uint8 (rows, cols, 3)`` tile resized into SAM's input frame, ``uint8 (new_rows, new_cols, 3)``.

    PIL's bilinear resize of the uint8 image (a horizontal then a vertical pass, each rounded to
    uint8; the filter widens when it shrinks), as ``segment_anything`` and ``SamImageProcessor`` do.
    A tile already at the resized size is returned as it is.
    """
    rows, cols = resized_shape(tile.shape[:2], image_size)
    if (rows, cols) == tile.shape[:2]:
        return tile
    image = Image.fromarray(np.ascontiguousarray(tile))
    return np.array(image.resize((cols, rows), Image.Resampling.BILINEAR))


def normalize_and_pad(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """``uint8 (batch, rows, cols, 3)`` tiles already in the input frame -> SAM's ``pixel_values``.

    Returns:
        ``float32 (batch, 3, image_size, image_size)``: ImageNet-normalised, zero-padded bottom/right.
    """
    rows, cols = images.shape[1:3]
    x = images.permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
    return F.pad((x - mean) / std, (0, image_size - cols, 0, image_size - rows))


def square_pixels(
    images: torch.Tensor,
    image_size: int,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """``uint8 (batch, rows, cols, 3)`` tiles -> SAM 2's ``pixel_values``, ``float32 (batch, 3, image_size, image_size)``.

    Scaled to [0, 1], resized (unless already ``image_size`` square) bilinearly with antialiasing to
    ``image_size`` square whatever the aspect (as torchvision's ``Resize`` on a tensor), then
    normalised with ``mean`` / ``std`` (ImageNet's; SAM 3 uses 0.5 / 0.5).
    """
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    shift = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    scale = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - shift) / scale


def upsample_square_masks(low_res: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(n, m, m)`` SAM 2 mask-frame logits -> ``float32 (n, rows, cols)``: one bilinear resize to the tile."""
    return F.interpolate(low_res[:, None].float(), size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]


def scale_coords(coords: np.ndarray, shape: tuple[int, int], resized: tuple[int, int]) -> np.ndarray:
    """Coordinates from the tile frame to the input frame (``ResizeLongestSide.apply_coords``).

    Args:
        coords: ``(..., 2)`` ``(x, y)`` pairs in tile pixels (a box ``xyxy`` as ``(2, 2)``).
        shape: the tile's ``(rows, cols)``; resized: :func:`resized_shape` of it.

    Returns:
        ``float32`` of the same shape (scaled in float64, as the reference does, then rounded to float32).
    """
    scale = np.array([resized[1] / shape[1], resized[0] / shape[0]], np.float64)
    return (np.asarray(coords, np.float64) * scale).astype(np.float32)


def upsample_masks(low_res: torch.Tensor, shape: tuple[int, int], resized: tuple[int, int], image_size: int) -> torch.Tensor:
    """``(n, m, m)`` mask-frame logits -> ``float32 (n, rows, cols)`` logits in the tile frame.

    As ``Sam.postprocess_masks``: bilinear to the ``image_size`` input frame, crop the padding
    (keep ``resized``), bilinear to the tile's ``shape`` (``align_corners=False`` both times).
    """
    x = F.interpolate(low_res[:, None].float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : resized[0], : resized[1]]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]


__all__ = ["resized_shape", "resize_tile", "normalize_and_pad", "square_pixels", "scale_coords", "upsample_masks",
           "upsample_square_masks",
           "IMAGENET_MEAN", "IMAGENET_STD"]  # fmt: skip
