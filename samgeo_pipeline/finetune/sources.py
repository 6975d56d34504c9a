"""Labelled samples for fine-tuning and evaluation: Hugging Face datasets, chip folders, orthoimages.

Every source yields :class:`Sample` objects made with the segment pipeline's own radiometry: each
image (a chip file, a dataset row, or a whole orthoimage) gets its per-image percentile stretch and
water-index threshold (:func:`~samgeo_pipeline.water.radiometry.stats_from_array` /
:func:`~samgeo_pipeline.water.radiometry.compute_stats`), then the composite SAM sees
(:func:`~samgeo_pipeline.water.radiometry.to_rgb8`) and the coarse mask
(:func:`~samgeo_pipeline.water.coarse.apply_rule`). Sources load lazily and open files per call,
so they can be used from data-loader worker processes.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from samgeo_pipeline.errors import ConfigError, InputError, NotGeoreferencedWarning, ignore_rasterio_georeference_warnings
from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.finetune.ortho import OrthoSource
from samgeo_pipeline.finetune.sample_types import (
    ConcatSource,
    Sample,
    SampleSource,
    SubsetSource,
    label_masks,
    make_sample,
)
from samgeo_pipeline.io.bands import parse_bands
from samgeo_pipeline.io.raster import RASTER_SUFFIXES, inspect_raster, read_bands
from samgeo_pipeline.water.radiometry import compute_stats, resolve_composite

ignore_rasterio_georeference_warnings()
# Chips are often plain images without georeferencing: inspect_raster's warning about it (attributed
# to this module) says nothing useful here. A filter set once; catch_warnings() is not thread-safe.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"samgeo_pipeline\.finetune\.sources")

IMAGE_SUFFIXES = (*RASTER_SUFFIXES, ".png", ".jpg", ".jpeg")


class ChipFolderSource(SampleSource):
    """Image chips ``ROOT/images/NAME.tif`` with labels ``ROOT/labels/NAME.png`` (or .tif).

    Each chip is one image for the radiometry (its own percentiles and threshold), as when the
    segment pipeline runs on that chip file.
    """

    def __init__(self, root: Path, config: FinetuneConfig) -> None:
        images_dir, labels_dir = root / config.images_dir, root / config.labels_dir
        labels = {p.stem: p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        images = [p for p in sorted(images_dir.iterdir(), key=_natural) if p.suffix.lower() in IMAGE_SUFFIXES]
        pairs = [(p, labels[p.stem]) for p in images if p.stem in labels]
        if not pairs:
            raise InputError(
                f"{root}: no image/label pairs ({images_dir.name}/NAME.tif with {labels_dir.name}/NAME.png "
                "of the same stem)"
            )
        self.config = config
        self.seg = config.segment_config()
        self.pairs = pairs
        self.names = [p.stem for p, _ in pairs]
        info = inspect_raster(pairs[0][0], config.bands, config.nodata)
        self.band_names = tuple(info.band_names)
        self.composite = resolve_composite(config.composite, self.band_names, str(pairs[0][0]))
        self.description = f"chip folder {root} ({len(pairs)} pairs)"

    def load(self, index: int) -> Sample:
        image_path, label_path = self.pairs[index]
        info = inspect_raster(image_path, self.config.bands, self.config.nodata)
        with rasterio.open(image_path) as ds:
            data, valid = read_bands(ds, info, Window(0, 0, info.width, info.height))
            stats = compute_stats(ds, info, self.seg) if valid.any() else None
        with rasterio.open(label_path) as ds:
            raw = ds.read(1)
        if raw.shape != valid.shape:
            raise InputError(f"{label_path}: label is {raw.shape[0]}x{raw.shape[1]}, image is {info.height}x{info.width}")
        water, known = label_masks(raw, self.config.label_ignore)
        return make_sample(self.names[index], data, valid & known, water, self.band_names, self.seg, stats)


class HFDatasetSource(SampleSource):
    """A Hugging Face ``datasets.Dataset`` with an image column and a label column (Elwha schema).

    Images may be PIL images (converted to RGB) or arrays ``(rows, cols, bands)`` / ``(bands, rows,
    cols)``; labels are 2-D, water > 0. A ``name`` column, when present, names the samples.
    """

    def __init__(self, dataset: Any, config: FinetuneConfig, description: str) -> None:
        for column in (config.image_column, config.label_column):
            if column not in dataset.column_names:
                raise InputError(
                    f"{description}: no column {column!r} (columns: {', '.join(dataset.column_names)}); "
                    "pass --image-column / --label-column"
                )
        self.dataset = dataset
        self.config = config
        self.seg = config.segment_config()
        if "name" in dataset.column_names:
            self.names = [str(n) for n in dataset["name"]]
        else:
            self.names = [f"{description.rsplit('/', 1)[-1]}_{i:05d}" for i in range(len(dataset))]
        if len(set(self.names)) != len(self.names):
            self.names = [f"{i:05d}_{n}" for i, n in enumerate(self.names)]
        first = image_array(dataset[0][config.image_column]) if len(dataset) else np.zeros((3, 1, 1), np.float32)
        self.band_map = parse_bands(config.bands, first.shape[0])
        self.band_map.check(first.shape[0], description)
        self.band_names = tuple(self.band_map.as_dict())
        self.composite = resolve_composite(config.composite, self.band_names, description)
        self.description = f"{description} ({len(dataset)} rows)"

    def load(self, index: int) -> Sample:
        row = self.dataset[index]
        image = image_array(row[self.config.image_column])
        data = image[[i - 1 for i in self.band_map.as_dict().values()]]
        water, known = label_masks(np.asarray(row[self.config.label_column]), self.config.label_ignore)
        if water.shape != data.shape[1:]:
            raise InputError(f"{self.names[index]}: label {water.shape} and image {data.shape[1:]} differ in size")
        valid = known & np.isfinite(data).all(axis=0)
        if self.config.nodata is not None:
            valid &= ~(data == np.float32(self.config.nodata)).any(axis=0)
        return make_sample(self.names[index], data, valid, water, self.band_names, self.seg)


def image_array(value: Any) -> np.ndarray:
    """A dataset image as ``float32 (bands, rows, cols)``: PIL images become RGB, arrays keep their bands."""
    from PIL import Image

    if isinstance(value, Image.Image):
        array = np.asarray(value if value.mode == "RGB" else value.convert("RGB"))
    else:
        array = np.asarray(value)
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] < array.shape[0] and array.shape[-1] <= 16:
        array = np.moveaxis(array, -1, 0)  # (rows, cols, bands) -> (bands, rows, cols)
    if array.ndim != 3:
        raise InputError(f"dataset image of shape {array.shape}: expected 2-D or 3-D")
    return array.astype(np.float32, copy=False)


def split_by_name(names: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split by a hash of each name (stable when samples are added).

    Returns:
        ``(train_indices, val_indices)``; at least one validation sample when ``fraction > 0`` and
        there are two samples or more.
    """
    if fraction <= 0:
        return list(range(len(names))), []
    u = [int(hashlib.sha1(f"{seed}:{n}".encode()).hexdigest()[:12], 16) / 16**12 for n in names]
    val = [i for i, x in enumerate(u) if x < fraction]
    if not val and len(names) > 1:
        val = [int(np.argmin(u))]
    chosen = set(val)
    return [i for i in range(len(names)) if i not in chosen], val


def open_source(spec: str, config: FinetuneConfig, labels: str | None = None) -> SampleSource | dict[str, SampleSource]:
    """Open ``spec``: a chip folder, a ``save_to_disk`` dataset, an orthoimage, or a hub dataset name.

    Returns:
        One source, or a dict of split name -> source for a Hugging Face ``DatasetDict``.

    Raises:
        InputError: the spec is none of these, or an orthoimage comes without labels.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / config.images_dir).is_dir() and (path / config.labels_dir).is_dir():
            return ChipFolderSource(path, config)
        if any((path / f).is_file() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
            import datasets

            return _hf_sources(datasets.load_from_disk(str(path)), config, str(path))
        raise InputError(
            f"{path}: neither a chip folder ({config.images_dir}/ and {config.labels_dir}/) nor a dataset "
            "saved with save_to_disk"
        )
    if path.is_file():
        if labels is None:
            raise InputError(f"{path}: an orthoimage needs labels: pass --labels LABEL.tif or LABELS.gpkg")
        return OrthoSource(path, Path(labels), config)
    if path.is_absolute() or spec.startswith((".", "~")) or not spec:
        raise InputError(f"{spec!r}: no such file or folder (data: a chip folder, dataset folder, or orthoimage)")
    import datasets  # a hub dataset name: the one place that may download

    try:
        loaded = datasets.load_dataset(spec)
    except Exception as exc:  # noqa: BLE001 - hub and network errors come in many types
        raise InputError(f"{spec}: not a local path, and loading it from the Hugging Face hub failed ({exc})") from None
    return _hf_sources(loaded, config, spec)


def _hf_sources(loaded: Any, config: FinetuneConfig, description: str) -> SampleSource | dict[str, SampleSource]:
    if hasattr(loaded, "column_names") and isinstance(loaded.column_names, list):
        return HFDatasetSource(loaded, config, description)
    return {split: HFDatasetSource(ds, config, f"{description}/{split}") for split, ds in loaded.items()}


def open_datasets(config: FinetuneConfig) -> tuple[SampleSource, SampleSource | None]:
    """Training and validation sources of ``config`` (validation may be None).

    Validation comes from ``val_data``, else the dataset's ``val_split``, else a ``val_fraction``
    hash split of the training data. ``max_images`` caps both.

    Raises:
        ConfigError: no ``data``, or a dataset without the training split.
    """
    if not config.data:
        raise ConfigError("no training data: pass --data (chip folder, dataset, or orthoimage with --labels)")
    opened = open_source(config.data, config, config.labels)
    val: SampleSource | None = None
    if isinstance(opened, dict):
        if config.train_split not in opened:
            raise ConfigError(f"{config.data}: no split {config.train_split!r} (splits: {', '.join(opened)})")
        train = opened[config.train_split]
        val = opened.get(config.val_split)
    else:
        train = opened
    if config.val_data:
        other = open_source(config.val_data, config, config.val_labels)
        if isinstance(other, dict):
            if config.val_split not in other:
                raise ConfigError(f"{config.val_data}: no split {config.val_split!r} (splits: {', '.join(other)})")
            other = other[config.val_split]
        val = other
    elif val is None and config.val_fraction > 0:
        train_idx, val_idx = split_by_name(train.names, config.val_fraction, config.seed)
        parent = train
        train = SubsetSource(parent, train_idx, "train")
        val = SubsetSource(parent, val_idx, "validation") if val_idx else None
    if config.max_images is not None:
        train = _capped(train, config.max_images, "train")
        val = _capped(val, config.max_images, "validation") if val is not None else None
    return train, val


def _capped(source: SampleSource, n: int, label: str) -> SampleSource:
    return source if len(source) <= n else SubsetSource(source, list(range(n)), f"{label}, first {n}")


def _natural(path: Path) -> tuple[int, str]:
    """Sort key: numeric stems in numeric order (2.tif before 10.tif), then the rest by name."""
    return (int(path.stem), "") if path.stem.isdigit() else (1 << 62, path.stem)


__all__ = [
    "Sample",
    "SampleSource",
    "SubsetSource",
    "ConcatSource",
    "ChipFolderSource",
    "HFDatasetSource",
    "make_sample",
    "open_source",
    "open_datasets",
    "split_by_name",
]
