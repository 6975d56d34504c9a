"""The predictor interface every model family implements (what the pipeline, flows and ``evaluate`` call).

Frames are those of :mod:`samgeo_pipeline.sam.geometry`: tiles ``uint8 (rows, cols, 3)`` RGB,
prompts in tile pixels ``(col, row)``, answers ``(rows, cols)`` in the tile frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from samgeo_pipeline.sam.decode import Embeddings
from samgeo_pipeline.water.prompts import ComponentPrompt


class Predictor(Protocol):
    """A loaded model of one family on a device.

    Attributes:
        family: its key in :data:`~samgeo_pipeline.models.families.FAMILIES`.
        model: the transformers model (eval mode).
        device: where it runs; autocast_dtype: bf16/fp16 autocast dtype, or None for fp32.
        image_size: the model's input side.
    """

    family: str
    model: torch.nn.Module
    device: torch.device
    autocast_dtype: torch.dtype | None
    image_size: int

    def embed(self, tiles: np.ndarray | Sequence[np.ndarray]) -> tuple[Embeddings, tuple[int, int]]:
        """Image embeddings of a batch of same-size tiles and the size of a tile in the model's input frame."""
        ...

    def predict_masks(
        self,
        embeddings: Embeddings,
        prompts: Sequence[list[ComponentPrompt]],
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
        merge: str = "joint",
        logits: bool = False,
    ) -> list[np.ndarray]:
        """Per tile, the union of its components' masks (``bool``), or logits (``float32``) when ``logits``."""
        ...

    def predict_logits(
        self,
        embedding: Embeddings,
        prompts: list[ComponentPrompt],
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
        merge: str = "joint",
    ) -> np.ndarray:
        """``float32 (rows, cols)`` logits of one tile."""
        ...


class TextPredictor(Predictor, Protocol):
    """A predictor that also answers text prompts (SAM 3, :mod:`samgeo_pipeline.models.sam3`)."""

    def predict_text(
        self, embeddings: Embeddings, phrases: Sequence[str], threshold: float, tile_shape: tuple[int, int]
    ) -> list[np.ndarray]:
        """Per tile, ``bool (k, rows, cols)``: the instances of any phrase scoring above ``threshold``, in the tile frame."""
        ...


__all__ = ["Predictor", "TextPredictor"]
