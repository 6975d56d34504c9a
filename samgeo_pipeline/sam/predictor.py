"""SAM through Hugging Face transformers: loading, preprocessing, batched encoder, prompted decoder.

NumPy-facing entry points (:meth:`SamPredictor.embed`, :meth:`SamPredictor.predict_masks`) wrap
batched torch code. Frames (:mod:`samgeo_pipeline.sam.geometry`, the one place for SAM's
geometry): a tile is ``uint8 (rows, cols, 3)`` RGB; SAM sees it resized as uint8 so its longest
side is ``image_size`` (1024 for released models), normalised with ImageNet mean/std and padded
bottom/right to ``image_size``². Prompt coordinates are given in tile pixels ``(col, row)``;
prompts are decoded by :mod:`samgeo_pipeline.sam.decode` (never padded). Output logits are
``float32 (rows, cols)`` in the tile frame (water where > 0).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast

import numpy as np
import torch

from samgeo_pipeline.errors import ConfigError, ModelUnavailableError, first_line
from samgeo_pipeline.models.families import FAMILIES, read_family
from samgeo_pipeline.sam.attention import chunk_global_attention
from samgeo_pipeline.sam.decode import NO_MASK_LOGIT, Embeddings, RowBatch, component_logits, prompt_rows
from samgeo_pipeline.sam.geometry import normalize_and_pad, resize_tile, resized_shape, upsample_masks
from samgeo_pipeline.sam.weights import weight_files, weights_present
from samgeo_pipeline.water.prompts import ComponentPrompt

if TYPE_CHECKING:
    from transformers import SamModel

    from samgeo_pipeline.config import ImageOptions

#: A segment or fine-tuning config (:func:`checkpoint_config` returns the same type).
Options = TypeVar("Options", bound="ImageOptions")

#: File a fine-tuned checkpoint of this project carries beside the ``save_pretrained`` files.
CHECKPOINT_META = "samgeo_checkpoint.json"


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; anything else is passed to :class:`torch.device`."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """Autocast dtype: None (fp32) on CPU/MPS for auto; bf16 on CUDA when supported, else fp16."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


#: Where a model's weights came from (:attr:`ModelSource.origin`).
Origin = Literal["local directory", "fine-tuned checkpoint", "hub cache", "hub download"]


@dataclass(frozen=True)
class ModelSource:
    """Where the weights came from and their family (``config.json``'s ``model_type``, a key of
    :data:`~samgeo_pipeline.models.families.FAMILIES`), for logs and the manifest."""

    name: str
    origin: Origin
    family: str = "sam"

    def __str__(self) -> str:
        return f"{self.name} ({self.origin})"


def load_sam_model(model: str) -> tuple[torch.nn.Module, ModelSource]:
    """Load a model of a supported family from a local ``save_pretrained`` directory or a hub id.

    The family is read from the folder's ``config.json`` (:func:`~samgeo_pipeline.models.families.read_family`)
    and the folder loaded with its own transformers class (``SamModel``, ``SamHQModel``,
    ``Sam2Model``); the returned source names it (``source.family``).

    A hub id is looked up in the local cache first; only if absent (and ``HF_HUB_OFFLINE`` is not
    set) is it downloaded (its ``.json`` and ``.safetensors`` files only). Weights are read only
    from ``.safetensors`` files inside the model folder (or the hub snapshot), an index's shards
    included (:func:`~samgeo_pipeline.sam.weights.weight_files`, checked before transformers opens
    anything): pickle files (``pytorch_model.bin``) can run code when loaded and are refused.

    Raises:
        ModelUnavailableError: the directory is not a model of a supported family or names weights
            that are not safetensors inside it, or the weights are neither cached nor reachable. The message says
            how to pass a local model or ``--model none``.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"{path}: not a SAM model directory (no config.json); create one with "
                "SamModel.from_pretrained(...).save_pretrained(DIR) on a machine with internet access"
            )
        origin: Origin = "fine-tuned checkpoint" if (path / CHECKPOINT_META).is_file() else "local directory"
        return _load_folder(path, path, ModelSource(str(path), origin))
    snapshot = _hub_snapshot(model, local_only=True)
    if snapshot is not None and weights_present(snapshot):
        return _load_folder(snapshot, snapshot.parent.parent, ModelSource(model, "hub cache"))
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    hint = (
        f"SAM weights {model!r} are not in the Hugging Face cache and cannot be downloaded"
        f"{' (HF_HUB_OFFLINE is set)' if offline else ''}. Pass a local model directory "
        "(--model /path/to/dir, made with SamModel.from_pretrained(...).save_pretrained(dir) where the "
        "hub is reachable), or --model none for the coarse mask alone"
    )
    if offline:
        raise ModelUnavailableError(hint)
    try:
        snapshot = _hub_snapshot(model, local_only=False)
    except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types
        raise ModelUnavailableError(f"{hint} ({first_line(exc)})") from None
    assert snapshot is not None
    return _load_folder(snapshot, snapshot.parent.parent, ModelSource(model, "hub download"))


def _load_folder(folder: Path, root: Path, source: ModelSource) -> tuple[torch.nn.Module, ModelSource]:
    """``from_pretrained(folder)`` with the class of its family (:func:`~samgeo_pipeline.models.families.read_family`,
    an unsupported one refused first) once :func:`~samgeo_pipeline.sam.weights.weight_files` has
    checked every file it will read (``root``: where they must resolve, see there)."""
    from safetensors import SafetensorError

    family = read_family(folder)
    weight_files(folder, root)
    try:
        loaded = family.load_class().from_pretrained(folder.resolve(), use_safetensors=True)
        return loaded.eval(), replace(source, family=family.model_type)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
        raise ModelUnavailableError(f"{folder}: cannot load {family.label} weights ({first_line(exc)})") from None


def _hub_snapshot(repo_id: str, local_only: bool) -> Path | None:
    """The Hugging Face cache snapshot folder of ``repo_id`` (downloading its ``.json`` and
    ``.safetensors`` files unless ``local_only``), or None when ``local_only`` and not cached.

    Raises:
        Exception: hub and network errors of the download (``local_only=False``).
    """
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors"]
    if not local_only:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), not a repo id
        return None


def read_checkpoint_preprocessing(model: str) -> dict[str, Any] | None:
    """The ``preprocessing`` section of a fine-tuned checkpoint's :data:`CHECKPOINT_META`, else None.

    It holds what SAM saw in training: ``composite`` (three band names), ``percentiles`` and, when
    the training data had an explicit band mapping, ``bands``. See
    :meth:`samgeo_pipeline.config.ImageOptions.with_checkpoint`.

    Raises:
        ModelUnavailableError: the file exists but is not valid JSON.
    """
    import json

    path = Path(model).expanduser() / CHECKPOINT_META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"{path}: unreadable checkpoint description ({first_line(exc)})") from None
    preprocessing = meta.get("preprocessing") if isinstance(meta, dict) else None
    return dict(preprocessing) if isinstance(preprocessing, dict) else None


def checkpoint_config(config: Options, model: str | None = None) -> Options:
    """``config`` as the model needs it: a fine-tuned checkpoint's composite, percentiles and band
    mapping applied (:func:`read_checkpoint_preprocessing`, :meth:`~samgeo_pipeline.config.ImageOptions.with_checkpoint`);
    ``config`` itself for ``none`` or a model without :data:`CHECKPOINT_META`.

    The one place options take a model's preprocessing, once per run and before anything uses them
    (the reuse decision's parameter hash, the statistics, the manifest): the CLI's batch
    (:func:`~samgeo_pipeline.run.batch.segment_many`), the segment flow,
    :func:`~samgeo_pipeline.run.image.segment_raster` and ``evaluate`` (each model it compares).
    Applying it again changes nothing.

    Args:
        config: a segment or fine-tuning config.
        model: the model whose preprocessing applies; default ``config.model``.

    Raises:
        ModelUnavailableError: the checkpoint's description is not valid JSON.
    """
    model = config.model if model is None else model
    preprocessing = read_checkpoint_preprocessing(model) if model.lower() != "none" else None
    return config.with_checkpoint(preprocessing) if preprocessing else config


def preprocess_torch(images: torch.Tensor, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's ``pixel_values`` of a batch of same-size tiles, equal to ``SamImageProcessor``'s.

    Args:
        images: ``uint8 (batch, rows, cols, 3)`` RGB, on any device. Tiles that need resizing are
            resized on the CPU (:func:`~samgeo_pipeline.sam.geometry.resize_tile`), the others stay
            where they are.
        image_size: SAM's input side (``config.vision_config.image_size``).

    Returns:
        ``(pixel_values, (new_rows, new_cols))``: ``float32 (batch, 3, image_size, image_size)``
        normalised and zero-padded bottom/right, and the size of the resized tile inside it.
    """
    rows, cols = images.shape[1:3]
    resized = resized_shape((rows, cols), image_size)
    if resized != tuple(images.shape[1:3]):
        host = images.cpu().numpy()
        images = torch.from_numpy(np.stack([resize_tile(tile, image_size) for tile in host])).to(images.device)
    return normalize_and_pad(images, image_size), resized


@dataclass
class SamPredictor:
    """A loaded SAM on a device: batched image embeddings and prompted masks.

    The SAM family's implementation of :class:`~samgeo_pipeline.models.base.Predictor`; the other
    families' predictors (:mod:`samgeo_pipeline.models`) override the per-family steps
    (:meth:`_pixel_values`, :meth:`_encode`, :meth:`_upsample`, :meth:`_read_image_size`).

    Args:
        model: a transformers ``SamModel`` in eval mode.
        device: where it runs.
        autocast_dtype: bf16/fp16 autocast dtype on GPU, or None for fp32.
        attention_rows: when set, the encoder's global-attention layers attend this many token rows
            at a time (:func:`~samgeo_pipeline.sam.attention.chunk_global_attention`: less memory,
            the same embeddings); None keeps transformers' dense layers.
    """

    model: torch.nn.Module
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    attention_rows: int | None = None
    _staging: torch.Tensor | None = field(default=None, init=False, repr=False)
    """CUDA: pinned host buffer the tiles of a batch are copied into (reused, see :meth:`_to_device`)."""
    _staged: torch.cuda.Event | None = field(default=None, init=False, repr=False)
    """CUDA: recorded after the last copy out of ``_staging``."""

    family: ClassVar[str] = "sam"
    """The :data:`~samgeo_pipeline.models.families.FAMILIES` key this predictor runs."""

    def __post_init__(self) -> None:
        self.model.to(self.device).eval()
        if self.attention_rows is not None and not chunk_global_attention(self.model, self.attention_rows):
            raise ConfigError(f"attention_rows: {FAMILIES[self.family].label}'s encoder has no SAM global-attention "
                              "layer to chunk; leave --attention-rows unset for this model")  # fmt: skip
        self.image_size = self._read_image_size()

    def _read_image_size(self) -> int:
        """The model's input side (``config.vision_config.image_size``)."""
        config: Any = self.model.config  # transformers' config of the model's family
        return int(config.vision_config.image_size)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def embed(self, tiles: np.ndarray | Sequence[np.ndarray]) -> tuple[Embeddings, tuple[int, int]]:
        """Image embeddings of a batch of tiles.

        Tiles whose longest side is not ``image_size`` are resized on the CPU as uint8
        (:func:`~samgeo_pipeline.sam.geometry.resize_tile`); the ``uint8`` tiles then go to the
        device (on CUDA in one copy from pinned memory), where they are normalised and padded.

        Args:
            tiles: ``uint8 (batch, rows, cols, 3)`` RGB, or a sequence of ``uint8 (rows, cols, 3)``
                tiles of one size.

        Returns:
            ``(embeddings, resized)``: ``(batch, 256, e, e)`` on the device (e = image_size / 16) and
            the resized tile size inside SAM's padded input (other families: their embeddings,
            :data:`~samgeo_pipeline.sam.decode.Embeddings`, and their input frame's size).
        """
        pixel_values, resized = self._pixel_values(tiles)
        with self._autocast():
            embeddings = self._encode(pixel_values)
        return embeddings, resized

    def _pixel_values(self, tiles: np.ndarray | Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        """SAM's ``pixel_values`` of the tiles on the device and the resized size (see :meth:`embed`)."""
        if resized_shape(tiles[0].shape[:2], self.image_size) != tuple(tiles[0].shape[:2]):
            tiles = [resize_tile(tile, self.image_size) for tile in tiles]
        return preprocess_torch(self._to_device(tiles), self.image_size)

    def _encode(self, pixel_values: torch.Tensor) -> Embeddings:
        """The encoder's embeddings of ``pixel_values`` (under the predictor's autocast)."""
        embeddings: torch.Tensor = cast("SamModel", self.model).get_image_embeddings(pixel_values)
        return embeddings

    def _to_device(self, tiles: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """``uint8 (batch, rows, cols, 3)`` on the device.

        On CUDA each tile is copied once, into a pinned buffer that is reused from batch to batch,
        and the batch goes to the GPU in one asynchronous copy; elsewhere the tiles are stacked.
        """
        if self.device.type != "cuda":
            batch = tiles if isinstance(tiles, np.ndarray) else np.stack(tiles)
            return torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        shape = (len(tiles), *tiles[0].shape)
        if self._staging is None or self._staging.shape[1:] != shape[1:] or len(self._staging) < shape[0]:
            self._staging = torch.empty(shape, dtype=torch.uint8).pin_memory()
            self._staged = None
        if self._staged is not None:
            self._staged.synchronize()  # the previous batch has left the buffer
        host = self._staging.numpy()
        for i, tile in enumerate(tiles):
            host[i] = tile
        images = self._staging[: shape[0]].to(self.device, non_blocking=True)
        self._staged = torch.cuda.Event()
        self._staged.record()
        return images

    @torch.inference_mode()
    def predict_masks(
        self,
        embeddings: Embeddings,
        prompts: Sequence[list[ComponentPrompt]],
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
        merge: str = "joint",
        logits: bool = False,
    ) -> list[np.ndarray]:
        """Water of every tile of an encoder batch: the union of its components' masks.

        The prompts of all tiles are decoded together, one decoder call per prompt shape
        (:mod:`samgeo_pipeline.sam.decode`: never padded, so each tile's logits are those of its
        prompts decoded alone, up to float rounding of the batched call). Upsampling to the tile,
        the union (max) over components and the threshold run on the device; only the result comes
        back, in one copy for the batch.

        Args:
            embeddings: ``(batch, 256, e, e)`` from :meth:`embed`.
            prompts: for each tile of the batch, one prompt per component (points or box, tile pixels).
            tile_shape: ``(rows, cols)`` of the tiles.
            resized: the resized size returned by :meth:`embed`.
            merge: ``joint`` (a component's points form one prompt), ``mean`` (one prompt per
                positive point with the component's negatives, logits averaged) or ``best`` (the
                one with the highest predicted IoU).
            logits: return the logits (``float32``) instead of the water mask.

        Returns:
            One ``bool (rows, cols)`` water mask (logits > 0) per tile, or ``float32 (rows, cols)``
            logits when ``logits`` is set (``NO_MASK_LOGIT`` for a tile without prompts).
        """
        rows = RowBatch.build([prompt_rows(p, merge, tile_shape, resized) for p in prompts]).to(self.device)
        with self._autocast():
            components = component_logits(self.model, embeddings, rows, merge)
        stacked = torch.stack([self._union(c, tile_shape, resized) for c in components])
        host = stacked.cpu().numpy() if logits else (stacked > 0).cpu().numpy()
        return list(host)

    def predict_logits(
        self,
        embedding: Embeddings,
        prompts: list[ComponentPrompt],
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
        merge: str = "joint",
    ) -> np.ndarray:
        """``float32 (rows, cols)`` water logits of one tile (``embedding`` ``(1, 256, e, e)``); see :meth:`predict_masks`."""
        return self.predict_masks(embedding, [prompts], tile_shape, resized, merge, logits=True)[0]

    def _union(self, components: torch.Tensor, tile_shape: tuple[int, int], resized: tuple[int, int]) -> torch.Tensor:
        """``(k, m, m)`` component logits of a tile -> ``float32 (rows, cols)``: their maximum in the tile frame."""
        if len(components) == 0:
            return torch.full(tile_shape, NO_MASK_LOGIT, device=components.device)
        return self._upsample(components, tile_shape, resized).max(0).values

    def _upsample(self, components: torch.Tensor, tile_shape: tuple[int, int], resized: tuple[int, int]) -> torch.Tensor:
        """``(k, m, m)`` mask-frame logits -> ``float32 (k, rows, cols)`` in the tile frame."""
        return upsample_masks(components, tile_shape, resized, self.image_size)
