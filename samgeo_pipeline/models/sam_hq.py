"""SAM-HQ: SAM's ViT encoder and geometry, a decoder that also reads the encoder's early features.

The encoder returns the final embedding and the outputs of its global-attention blocks
(``intermediate_embeddings``); both are handed to every decoder call, narrowed to the call's
images (:mod:`samgeo_pipeline.sam.decode`). Masks are the decoder's default output (SAM's mask
plus the HQ token's, ``hq_token_only=False``, as in the authors' predictor), computed as the
authors' decoder does (:mod:`samgeo_pipeline.models.sam_hq_decoder`: transformers 5.24's decoder
builds its masks from the image embedding before the two-way transformer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

import torch

from samgeo_pipeline.models.sam_hq_decoder import use_reference_decoder
from samgeo_pipeline.sam.decode import Embeddings
from samgeo_pipeline.sam.predictor import SamPredictor

if TYPE_CHECKING:
    from transformers import SamHQModel


class SamHQPredictor(SamPredictor):
    """:class:`~samgeo_pipeline.sam.predictor.SamPredictor` for a transformers ``SamHQModel``."""

    family: ClassVar[str] = "sam_hq"

    def __post_init__(self) -> None:
        super().__post_init__()
        use_reference_decoder(self.model)

    def _encode(self, pixel_values: torch.Tensor) -> Embeddings:
        embeddings, intermediate = cast("SamHQModel", self.model).get_image_embeddings(pixel_values)
        return {"image_embeddings": embeddings, "intermediate_embeddings": list(intermediate)}


__all__ = ["SamHQPredictor"]
