"""SAM through Hugging Face transformers: loading, torch preprocessing, batched encoder, prompted decoder.

NumPy-facing entry points (:meth:`SamPredictor.embed`, :meth:`SamPredictor.predict_logits`) wrap
batched torch code. Frames: a tile is ``uint8 (rows, cols, 3)`` RGB; SAM sees it resized so its
longest side is ``image_size`` (1024 for released models), normalised with ImageNet mean/std and
padded bottom/right to ``image_size``². Prompt coordinates are given in tile pixels ``(col, row)``
and scaled here. Output logits are ``float32 (rows, cols)`` in the tile frame (water where > 0).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from samgeo_pipeline.errors import ModelUnavailableError
from samgeo_pipeline.prompts import PAD_LABEL, ComponentPrompt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


@dataclass(frozen=True)
class ModelSource:
    """Where the weights came from, for logs and the manifest."""

    name: str
    origin: Literal["local directory", "fine-tuned checkpoint", "hub cache", "hub download"]

    def __str__(self) -> str:
        return f"{self.name} ({self.origin})"


def load_sam_model(model: str) -> tuple[torch.nn.Module, ModelSource]:
    """Load a ``SamModel`` from a local ``save_pretrained`` directory or a hub id.

    A hub id is looked up in the local cache first; only if absent (and ``HF_HUB_OFFLINE`` is not
    set) is it downloaded. Only ``model.safetensors`` weights are read: pickle files
    (``pytorch_model.bin``) can run code when loaded and are refused.

    Raises:
        ModelUnavailableError: the directory is not a SAM model, or the weights are neither cached
            nor reachable. The message says how to pass a local model or ``--model none``.
    """
    from safetensors import SafetensorError
    from transformers import SamModel

    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"{path}: not a SAM model directory (no config.json); create one with "
                "SamModel.from_pretrained(...).save_pretrained(DIR) on a machine with internet access"
            )
        origin = "fine-tuned checkpoint" if (path / CHECKPOINT_META).is_file() else "local directory"
        if not any(path.glob("*.safetensors")):
            raise ModelUnavailableError(
                f"{path}: no model.safetensors (pickle weights such as pytorch_model.bin are not loaded: they can "
                "run code); convert them where you trust the file with SamModel.from_pretrained(DIR).save_pretrained(DIR)"
            )
        try:
            loaded = SamModel.from_pretrained(path, use_safetensors=True)
            return loaded.eval(), ModelSource(str(path), origin)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as exc:
            raise ModelUnavailableError(f"{path}: cannot load SAM weights ({_first_line(exc)})") from None
    try:
        cached = SamModel.from_pretrained(model, local_files_only=True, use_safetensors=True)
        return cached.eval(), ModelSource(model, "hub cache")
    except (OSError, ValueError):
        pass
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
        return SamModel.from_pretrained(model, use_safetensors=True).eval(), ModelSource(model, "hub download")
    except Exception as exc:  # noqa: BLE001 - hub/network errors come in many types
        raise ModelUnavailableError(f"{hint} ({_first_line(exc)})") from None


def read_checkpoint_preprocessing(model: str) -> dict | None:
    """The ``preprocessing`` section of a fine-tuned checkpoint's :data:`CHECKPOINT_META`, else None.

    It holds what SAM saw in training: ``composite`` (three band names), ``percentiles`` and, when
    the training data had an explicit band mapping, ``bands``. See
    :meth:`samgeo_pipeline.config.SegmentConfig.with_checkpoint`.

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
        raise ModelUnavailableError(f"{path}: unreadable checkpoint description ({_first_line(exc)})") from None
    preprocessing = meta.get("preprocessing") if isinstance(meta, dict) else None
    return dict(preprocessing) if isinstance(preprocessing, dict) else None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def preprocess_torch(images: torch.Tensor, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM preprocessing with torch ops, equal to ``SamProcessor`` for one tile size.

    Args:
        images: ``uint8 (batch, rows, cols, 3)`` RGB, all the same size, on any device.
        image_size: SAM's input side (``config.vision_config.image_size``).

    Returns:
        ``(pixel_values, (new_rows, new_cols))``: ``float32 (batch, 3, image_size, image_size)``
        normalised and zero-padded bottom/right, and the size of the resized image inside it.
    """
    rows, cols = images.shape[1:3]
    scale = image_size / max(rows, cols)
    new_rows, new_cols = int(rows * scale + 0.5), int(cols * scale + 0.5)
    x = images.permute(0, 3, 1, 2).float()
    if (new_rows, new_cols) != (rows, cols):
        x = F.interpolate(x, size=(new_rows, new_cols), mode="bilinear", align_corners=False, antialias=True)
        x = x.round().clamp(0, 255)  # the processor resizes uint8 images
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
    x = (x - mean) / std
    x = F.pad(x, (0, image_size - new_cols, 0, image_size - new_rows))
    return x, (new_rows, new_cols)


@dataclass
class SamPredictor:
    """A loaded SAM on a device: batched image embeddings and prompted masks.

    Args:
        model: a transformers ``SamModel`` in eval mode.
        device: where it runs.
        autocast_dtype: bf16/fp16 autocast dtype on GPU, or None for fp32.
        preprocessing: a fine-tuned checkpoint's input preprocessing (composite, percentiles, bands;
            see :func:`read_checkpoint_preprocessing`), applied by the segment pipeline; None for
            released models.
    """

    model: torch.nn.Module
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    preprocessing: dict | None = None
    _staging: torch.Tensor | None = field(default=None, init=False, repr=False)
    """CUDA: pinned host buffer the tiles of a batch are copied into (reused, see :meth:`_to_device`)."""
    _staged: torch.cuda.Event | None = field(default=None, init=False, repr=False)
    """CUDA: recorded after the last copy out of ``_staging``."""

    def __post_init__(self) -> None:
        self.model.to(self.device).eval()
        self.image_size = int(self.model.config.vision_config.image_size)

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def embed(self, tiles: np.ndarray | Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embeddings of a batch of tiles.

        The ``uint8`` tiles go to the device as they are (on CUDA in one copy from pinned memory);
        resizing and normalisation run there (:func:`preprocess_torch`).

        Args:
            tiles: ``uint8 (batch, rows, cols, 3)`` RGB, or a sequence of ``uint8 (rows, cols, 3)``
                tiles of one size.

        Returns:
            ``(embeddings, resized)``: ``(batch, 256, e, e)`` on the device (e = image_size / 16) and
            the resized tile size inside SAM's padded input.
        """
        images = self._to_device(tiles)
        pixel_values, resized = preprocess_torch(images, self.image_size)
        with self._autocast():
            embeddings = self.model.get_image_embeddings(pixel_values)
        return embeddings, resized

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
        embeddings: torch.Tensor,
        prompts: Sequence[list[ComponentPrompt]],
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
        merge: str = "joint",
        logits: bool = False,
    ) -> list[np.ndarray]:
        """Water of every tile of an encoder batch, with one decoder call for all of them.

        Tiles whose prompts have the same number of points (or are boxes) are decoded together:
        each tile's prompts are padded to the batch's largest count by repeating its first prompt
        (the decoder treats prompts independently; the repeats are dropped). Points are never
        padded across tiles, since padding points change SAM's answer. Upsampling to the tile, the
        union over prompts and the threshold run on the device; only the result comes back, in one
        copy for the batch. Each tile's logits are :meth:`predict_logits`'s up to float rounding
        of the batched decoder (equal for a batch of one).

        Args:
            embeddings: ``(batch, 256, e, e)`` from :meth:`embed`.
            prompts: for each tile of the batch, its component prompts (tile pixels).
            tile_shape, resized, merge: as in :meth:`predict_logits`.
            logits: return the logits (``float32``) instead of the water mask.

        Returns:
            One ``bool (rows, cols)`` water mask (logits > 0) per tile, or ``float32 (rows, cols)``
            logits when ``logits`` is set.
        """
        arrays = [self._prompt_arrays(p, merge) for p in prompts]
        by_shape: dict[tuple, list[int]] = {}
        for i, (tensors, _) in enumerate(arrays):
            key = tuple((name, value.shape[2:]) for name, value in sorted(tensors.items()))
            by_shape.setdefault(key, []).append(i)
        results: list[torch.Tensor | None] = [None] * len(prompts)
        for members in by_shape.values():
            rows = max(next(iter(arrays[i][0].values())).shape[1] for i in members)
            names = sorted(arrays[members[0]][0])
            kwargs = {
                name: torch.from_numpy(np.concatenate([_repeat_rows(arrays[i][0][name], rows) for i in members])).to(
                    self.device, non_blocking=True
                )
                for name in names
            }
            self._scale_coords(kwargs, tile_shape, resized)
            index = torch.tensor(members, device=embeddings.device)
            group_embeddings = embeddings if members == list(range(len(embeddings))) else embeddings[index]
            with self._autocast():
                out = self.model(image_embeddings=group_embeddings, multimask_output=False, **kwargs)
            for k, i in enumerate(members):
                tensors, groups = arrays[i]
                n = next(iter(tensors.values())).shape[1]
                results[i] = self._merged_logits(out.pred_masks[k, :n, 0], out.iou_scores[k, :n, 0], groups, merge,
                                                  tile_shape, resized)
        stacked = torch.stack(results)  # type: ignore[arg-type]
        host = stacked.float().cpu().numpy() if logits else (stacked > 0).cpu().numpy()
        return list(host)

    @torch.inference_mode()
    def predict_logits(
        self,
        embedding: torch.Tensor,
        prompts: list[ComponentPrompt],
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
        merge: str = "joint",
    ) -> np.ndarray:
        """Water logits of one tile: the union (max) of the masks of its component prompts.

        Args:
            embedding: ``(1, 256, e, e)`` from :meth:`embed`.
            prompts: one prompt per component (points or box), coordinates in tile pixels.
            tile_shape: ``(rows, cols)`` of the tile.
            resized: the resized size returned by :meth:`embed`.
            merge: ``joint`` (a component's points form one prompt), ``mean`` (one prompt per
                positive point, logits averaged) or ``best`` (highest predicted IoU).

        Returns:
            ``float32 (rows, cols)`` logits; water where > 0.
        """
        kwargs, groups = self._prompt_tensors(prompts, merge)
        self._scale_coords(kwargs, tile_shape, resized)
        with self._autocast():
            out = self.model(image_embeddings=embedding, multimask_output=False, **kwargs)
        logits = self._merged_logits(out.pred_masks[0, :, 0], out.iou_scores[0, :, 0], groups, merge, tile_shape, resized)
        return logits.cpu().numpy()

    def _scale_coords(self, kwargs: dict[str, torch.Tensor], tile_shape: tuple[int, int], resized: tuple[int, int]) -> None:
        """Prompt coordinates from tile pixels to SAM's resized input, in place of ``kwargs``' tensors."""
        scale = torch.tensor(
            [resized[1] / tile_shape[1], resized[0] / tile_shape[0]], device=self.device, dtype=torch.float32
        )
        for key in ("input_points", "input_boxes"):
            if key in kwargs:
                coords = kwargs[key]
                kwargs[key] = (coords.view(*coords.shape[:-1], -1, 2) * scale).view(coords.shape)

    def _merged_logits(
        self,
        pred_masks: torch.Tensor,
        iou_scores: torch.Tensor,
        groups: list[list[int]] | None,
        merge: str,
        tile_shape: tuple[int, int],
        resized: tuple[int, int],
    ) -> torch.Tensor:
        """One tile's ``(prompts, 256, 256)`` low-res masks -> its ``(rows, cols)`` logits (max over components)."""
        low_res = pred_masks.float()  # (prompts, 256, 256)
        if groups is not None:
            iou = iou_scores.float()
            merged = []
            for index in groups:
                if merge == "best":
                    merged.append(low_res[index[int(torch.argmax(iou[index]))]])
                else:
                    merged.append(low_res[index].mean(0))
            low_res = torch.stack(merged)
        logits = self._upsample(low_res, tile_shape, resized)
        return logits.max(0).values

    def _prompt_tensors(
        self, prompts: list[ComponentPrompt], merge: str
    ) -> tuple[dict[str, torch.Tensor], list[list[int]] | None]:
        """Batched prompt tensors on the device; for mean/best, also which rows belong to each component."""
        arrays, groups = self._prompt_arrays(prompts, merge)
        return {name: torch.from_numpy(value).to(self.device) for name, value in arrays.items()}, groups

    @staticmethod
    def _prompt_arrays(
        prompts: list[ComponentPrompt], merge: str
    ) -> tuple[dict[str, np.ndarray], list[list[int]] | None]:
        """:meth:`_prompt_tensors` as NumPy arrays (``(1, rows, ...)``)."""
        if prompts[0].box_xyxy is not None:
            boxes = np.stack([p.box_xyxy for p in prompts])[None]
            return {"input_boxes": boxes}, None
        if merge == "joint":
            rows = [(p.points_xy, p.labels) for p in prompts]
            groups = None
        else:
            rows, groups = [], []
            for p in prompts:
                positive, negative = p.labels == 1, p.labels == 0
                start = len(rows)
                for point in p.points_xy[positive]:
                    rows.append(
                        (np.concatenate([point[None], p.points_xy[negative]]), np.r_[1, p.labels[negative]])
                    )
                groups.append(list(range(start, len(rows))))
        width = max(len(r[0]) for r in rows)
        points = np.zeros((1, len(rows), width, 2), np.float32)
        labels = np.full((1, len(rows), width), PAD_LABEL, np.int64)
        for i, (xy, lab) in enumerate(rows):
            points[0, i, : len(xy)] = xy
            labels[0, i, : len(lab)] = lab
        return {"input_points": points, "input_labels": labels}, groups

    def _upsample(self, low_res: torch.Tensor, tile_shape: tuple[int, int], resized: tuple[int, int]) -> torch.Tensor:
        """``(n, 256, 256)`` low-res logits -> ``(n, rows, cols)`` in the tile frame."""
        x = F.interpolate(low_res[:, None], size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = x[..., : resized[0], : resized[1]]
        x = F.interpolate(x, size=tile_shape, mode="bilinear", align_corners=False)
        return x[:, 0]


def _repeat_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """``(1, n, ...)`` prompt array padded to ``(1, rows, ...)`` with copies of its first row."""
    if array.shape[1] == rows:
        return array
    return np.concatenate([array, np.repeat(array[:, :1], rows - array.shape[1], axis=1)], axis=1)
