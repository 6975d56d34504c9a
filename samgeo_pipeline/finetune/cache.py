"""Cache of image embeddings: the frozen encoder runs once per image, later epochs only decode.

The encoder is frozen during fine-tuning, so an image's embedding never changes within a run (nor
across runs with the same base model and preprocessing). ``memory`` keeps embeddings on the
training device (``(256, 64, 64)`` per 1024² image: 2 MiB in bf16, 4 MiB in fp32); ``disk`` keeps
one file per image under a folder named by the fingerprint of everything that shapes them, so a
resumed or repeated run reuses them; ``off`` stores nothing and the encoder runs at every step.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from samgeo_pipeline.finetune.config import FinetuneConfig
from samgeo_pipeline.io.atomic import atomic_path

#: Options that change what SAM's encoder sees, hence the embeddings.
_EMBEDDING_OPTIONS = (
    "model", "data", "labels", "val_data", "val_labels", "train_split", "val_split", "image_column",
    "images_dir", "bands", "nodata", "percentiles", "composite", "stats_size", "tile_size", "halo", "gsd",
)  # fmt: skip


def embedding_fingerprint(config: FinetuneConfig, image_size: int, dtype: torch.dtype) -> str:
    """Hash of the options, SAM input size and storage dtype that determine cached embeddings."""
    options = {k: getattr(config, k) for k in _EMBEDDING_OPTIONS}
    options.update(image_size=image_size, dtype=str(dtype))
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


class EmbeddingCache:
    """Embeddings by key (``split/name``), stored as ``dtype`` in memory on ``device`` or on disk.

    Args:
        mode: ``memory``, ``disk`` or ``off``.
        device: where :meth:`get` returns tensors.
        dtype: storage dtype (float32, or bf16/fp16 with mixed precision).
        directory: root of the disk cache (a sub-folder per ``fingerprint`` is used).
        fingerprint: see :func:`embedding_fingerprint`.
        shape: the ``(C, e, e)`` of an embedding of this model; a disk entry of another shape or
            dtype (a truncated, foreign or tampered file) is a miss, recomputed and rewritten.
            None checks the dtype alone.
    """

    def __init__(
        self,
        mode: str,
        device: torch.device,
        dtype: torch.dtype,
        directory: Path | None = None,
        fingerprint: str = "",
        shape: tuple[int, ...] | None = None,
    ) -> None:
        self.mode = mode
        self.device = device
        self.dtype = dtype
        self.shape = shape
        self._memory: dict[str, torch.Tensor] = {}
        self.directory: Path | None = None
        if mode == "disk":
            if directory is None:
                raise ValueError("a disk cache needs a directory")
            self.directory = directory / fingerprint
            self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """False for ``off``."""
        return self.mode != "off"

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"

    def __contains__(self, key: str) -> bool:
        if self.mode == "memory":
            return key in self._memory
        if self.mode == "disk":
            return self._path(key).is_file()
        return False

    def get(self, key: str) -> torch.Tensor | None:
        """The cached ``(C, e, e)`` embedding on the device, or None (a miss: the caller embeds the
        image again and :meth:`put` replaces the entry)."""
        if self.mode == "memory":
            found = self._memory.get(key)
        elif self.mode == "disk" and self._path(key).is_file():
            try:  # tensors only (weights_only): a file holding anything else is a miss, recomputed
                found = self._valid(torch.load(self._path(key), map_location=self.device, weights_only=True))
            except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
                found = None
        else:
            found = None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def _valid(self, found: object) -> torch.Tensor | None:
        """``found`` when it is a tensor of the storage dtype and the expected shape, else None."""
        if not isinstance(found, torch.Tensor) or found.dtype != self.dtype:
            return None
        return found if self.shape is None or tuple(found.shape) == tuple(self.shape) else None

    def put(self, key: str, embedding: torch.Tensor) -> None:
        """Store one ``(C, e, e)`` embedding (converted to the storage dtype)."""
        if self.mode == "memory":
            self._memory[key] = embedding.detach().to(self.device, self.dtype).clone()
        elif self.mode == "disk":
            with atomic_path(self._path(key)) as tmp:
                torch.save(embedding.detach().to("cpu", self.dtype).clone(), tmp)

    def stats(self) -> dict[str, Any]:
        """Mode, size and hit counts, for logs."""
        return {"mode": self.mode, "entries": len(self._memory) if self.mode == "memory" else None,
                "hits": self.hits, "misses": self.misses}  # fmt: skip


__all__ = ["EmbeddingCache", "embedding_fingerprint"]
