"""The sample types every fine-tuning source yields, and the helpers that build them.

Kept apart from :mod:`~samgeo_pipeline.finetune.sources` (which picks a source for a data spec)
so that the source kinds (chip folders, datasets, :mod:`~samgeo_pipeline.finetune.ortho`) import
these without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.water.coarse import apply_rule
from samgeo_pipeline.water.radiometry import ImageStats, stats_from_array, to_rgb8


@dataclass(frozen=True)
class Sample:
    """One labelled image, as SAM and the metrics see it (all arrays share the image's pixel grid).

    Attributes:
        name: unique, stable name (file stem, dataset row name, or ``ortho_rROW_cCOL``).
        rgb: ``uint8 (rows, cols, 3)`` the composite, stretched by the image's percentiles; 0 where invalid.
        label: ``bool (rows, cols)`` True = water; False where invalid.
        valid: ``bool (rows, cols)`` pixels with data and a known label.
        coarse: ``bool (rows, cols)`` the segment pipeline's coarse water mask.
    """

    name: str
    rgb: np.ndarray
    label: np.ndarray
    valid: np.ndarray
    coarse: np.ndarray


class SampleSource(ABC):
    """An indexable set of labelled samples.

    Attributes:
        names: one unique name per sample, in index order.
        band_names: mapped band names of the images (the order of the percentiles).
        composite: the three bands SAM sees (resolved from the config's ``composite``).
        description: where the samples come from, for logs and the checkpoint.
    """

    names: list[str]
    band_names: tuple[str, ...]
    composite: tuple[str, str, str]
    description: str

    def __len__(self) -> int:
        return len(self.names)

    @abstractmethod
    def load(self, index: int) -> Sample:
        """Read sample ``index`` (0-based)."""


class SubsetSource(SampleSource):
    """Some samples of another source, in the given order."""

    def __init__(self, parent: SampleSource, indices: list[int], label: str) -> None:
        self.parent = parent
        self.indices = list(indices)
        self.names = [parent.names[i] for i in self.indices]
        self.band_names = parent.band_names
        self.composite = parent.composite
        self.description = f"{parent.description} [{label}: {len(self.indices)} of {len(parent)}]"

    def load(self, index: int) -> Sample:
        return self.parent.load(self.indices[index])


class ConcatSource(SampleSource):
    """Several sources one after the other (same bands and composite as the first)."""

    def __init__(self, parts: list[SampleSource]) -> None:
        self.parts = parts
        self.names = [name for part in parts for name in part.names]
        self.band_names = parts[0].band_names
        self.composite = parts[0].composite
        self.description = " + ".join(part.description for part in parts)

    def load(self, index: int) -> Sample:
        for part in self.parts:
            if index < len(part):
                return part.load(index)
            index -= len(part)
        raise IndexError(index)


def make_sample(
    name: str,
    data: np.ndarray,
    valid: np.ndarray,
    water: np.ndarray,
    band_names: tuple[str, ...],
    config: SegmentConfig,
    stats: ImageStats | None = None,
) -> Sample:
    """A :class:`Sample` from band data and a label, with the segment pipeline's radiometry.

    Args:
        name: the sample's name.
        data: ``float32 (bands, rows, cols)`` in file units, bands in ``band_names`` order.
        valid: ``bool (rows, cols)`` pixels with data and a known label.
        water: ``bool (rows, cols)`` label, True = water.
        band_names: names of the bands of ``data``.
        config: radiometry, composite and coarse-mask options.
        stats: the image's statistics when ``data`` is a tile of a larger image; None: from ``data``.
    """
    if not valid.any():  # nothing usable: an all-invalid sample (dropped when samples are prepared)
        empty = np.zeros(valid.shape, bool)
        return Sample(name, np.zeros((*valid.shape, 3), np.uint8), empty, empty, empty)
    if stats is None:
        stats = stats_from_array(data, valid, band_names, config, name)
    rgb = to_rgb8(data, valid, stats)
    coarse = apply_rule(data, valid, stats.coarse, config.min_area, pools=False).water
    return Sample(name, rgb, water & valid, valid, coarse)


def label_masks(raw: np.ndarray, ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(water, known)`` from a label array: water where > 0, unknown where equal to ``ignore``.

    Args:
        raw: ``(rows, cols)`` label values (any numeric dtype), or ``(rows, cols, k)`` (first channel used).
        ignore: label value meaning unknown, or None.
    """
    raw = np.asarray(raw)
    if raw.ndim == 3:
        raw = raw[..., 0]
    known = np.ones(raw.shape, bool) if ignore is None else raw != ignore
    return (raw > 0) & known, known


__all__ = ["Sample", "SampleSource", "SubsetSource", "ConcatSource", "make_sample", "label_masks"]
