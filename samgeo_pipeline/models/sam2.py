"""SAM 2 / 2.1 (Hiera encoder) on single tiles: square input, three feature levels, direct mask resize.

As the authors' ``SAM2ImagePredictor``: a tile is stretched to ``image_size`` square
(:func:`~samgeo_pipeline.sam.geometry.square_pixels`), prompt coordinates are scaled per axis
(``resized`` = ``(image_size, image_size)``), the encoder's three feature levels (the last with
the "no memory" embedding added, by transformers' ``get_image_embeddings``) all go to the decoder,
and the decoder's masks are resized straight to the tile
(:func:`~samgeo_pipeline.sam.geometry.upsample_square_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import torch

from samgeo_pipeline.sam.decode import Embeddings
from samgeo_pipeline.sam.geometry import square_pixels, upsample_square_masks
from samgeo_pipeline.sam.predictor import SamPredictor

if TYPE_CHECKING:
    from transformers import Sam2Model


class Sam2Predictor(SamPredictor):
    """:class:`~samgeo_pipeline.sam.predictor.SamPredictor` for a transformers ``Sam2Model``."""

    family: ClassVar[str] = "sam2"

    def _read_image_size(self) -> int:
        config: Any = self.model.config  # a transformers Sam2Config
        return int(config.prompt_encoder_config.image_size)

    def _pixel_values(self, tiles: np.ndarray | Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        return square_pixels(self._to_device(tiles), self.image_size), (self.image_size, self.image_size)

    def _encode(self, pixel_values: torch.Tensor) -> Embeddings:
        return {"image_embeddings": list(cast("Sam2Model", self.model).get_image_embeddings(pixel_values))}

    def _upsample(self, components: torch.Tensor, tile_shape: tuple[int, int], resized: tuple[int, int]) -> torch.Tensor:
        return upsample_square_masks(components, tile_shape)


__all__ = ["Sam2Predictor"]
