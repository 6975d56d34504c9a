"""SAM 3 text prompts in the tiled pipeline: which tiles go to the model, and how its instances and
the coarse mask make a tile's water (``--prompt text``, ``--text-combine``).

Frames: every mask here is in the tile frame (``tile_size``² working pixels, ``bool``); SAM 3's
instances come from :meth:`~samgeo_pipeline.models.sam3.Sam3Predictor.predict_text` as
``bool (k, rows, cols)``. The combination modes (:data:`~samgeo_pipeline.config.TextCombine`):

* ``none``: the union of the instances (text only); every valid tile runs SAM 3.
* ``agree``: the instances that touch coarse water (one shared pixel); tiles without coarse water
  skip SAM 3 (nothing there could agree).
* ``add``: the union of the instances plus each coarse component no instance touches (transformers'
  ``Sam3Model`` takes no point prompts and its boxes are exemplars of a concept rather than objects,
  so a missed component is added as the coarse mask's own pixels); every valid tile runs.
* ``skip-dry``: text only, on the tiles with coarse water; the others keep the (empty) coarse mask.

An image whose coarse rule is uncertain uses ``none`` (:func:`combine_used`): its coarse mask is
not trusted to filter, add or skip.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.models.base import TextPredictor
from samgeo_pipeline.models.sam3 import TextOptions, combine_used
from samgeo_pipeline.run.prepare import PreparedTile
from samgeo_pipeline.sam.decode import Embeddings
from samgeo_pipeline.water.coarse import label_components


def for_image(config: SegmentConfig, uncertain: object | None) -> SegmentConfig:
    """``config`` as one image runs it: with ``--prompt text``, :func:`combine_used` for ``text_combine``."""
    if config.prompt != "text":
        return config
    return dataclasses.replace(config, text_combine=combine_used(config, uncertain))


def tile_needs_model(prepared: PreparedTile, combine: str) -> bool:
    """Whether a tile with valid data goes to SAM 3: always, except under ``agree`` / ``skip-dry`` without coarse water."""
    return combine in ("none", "add") or bool(prepared.coarse.any())


def combine_instances(instances: np.ndarray, coarse: np.ndarray, combine: str) -> np.ndarray:
    """One tile's water from SAM 3's instances and the coarse mask (module doc).

    Args:
        instances: ``bool (k, rows, cols)`` kept instances (``k`` may be 0).
        coarse: ``bool (rows, cols)`` coarse water.
        combine: ``none``, ``agree``, ``add`` or ``skip-dry``.

    Returns:
        ``bool (rows, cols)`` water.
    """
    if combine == "agree":
        instances = instances[(instances & coarse).any(axis=(1, 2))]
    water = np.zeros(coarse.shape, bool)
    if len(instances):
        np.any(instances, axis=0, out=water)
    if combine == "add":
        water = np.logical_or(water, missed_components(coarse, water))
    return water


def missed_components(coarse: np.ndarray, water: np.ndarray) -> np.ndarray:
    """``bool (rows, cols)``: the 8-connected components of ``coarse`` that share no pixel with ``water``."""
    count, labels = label_components(coarse)
    touched = np.zeros(count, bool)
    touched[labels[water & coarse]] = True
    touched[0] = True  # the background
    missed: np.ndarray = ~touched[labels]
    return missed


def text_water(predictor: TextPredictor, embeddings: Embeddings, batch: list[PreparedTile],
               config: TextOptions) -> list[np.ndarray]:  # fmt: skip
    """Water of each tile of an encoder batch under ``--prompt text``: ``bool (rows, cols)`` per tile.

    ``config.text_combine`` is the image's (:func:`for_image`).
    """
    tile_shape = batch[0].coarse.shape
    instances = predictor.predict_text(embeddings, config.phrases, config.text_threshold, tile_shape)
    return [combine_instances(i, p.coarse, config.text_combine) for i, p in zip(instances, batch, strict=True)]


__all__ = ["for_image", "tile_needs_model", "combine_instances", "missed_components", "text_water"]
