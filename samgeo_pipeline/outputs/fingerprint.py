"""What identifies an input's bytes (:func:`file_sha256`) and a model's weights (:func:`model_fingerprint`):
the keys of reuse (:mod:`samgeo_pipeline.outputs.reuse`), of the manifest and of the flow's cache."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from samgeo_pipeline.errors import ModelUnavailableError
from samgeo_pipeline.sam.weights import weight_files


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """What identifies the weights ``model`` names (``--model``), for reuse and the flow's cache.

    ``none`` for the coarse mask alone; for a local folder the SHA-256 of the bytes (names
    included) of exactly the weight files that are loaded (:func:`~samgeo_pipeline.sam.weights.weight_files`:
    ``model.safetensors``, or the index and every shard it names) and of its ``*.json`` files
    (configs, checkpoint meta); ``unloadable:`` and the reason for a folder whose weights are
    refused (never reused: no finished run used it); for a hub id the id and, when the Hugging
    Face cache holds it, the cached snapshot's revision (else the id alone).
    """
    if model.lower() == "none":
        return "none"
    path = Path(model).expanduser()
    if path.exists():
        folder = path.resolve()
        try:
            weights = weight_files(folder) if folder.is_dir() else [folder]
        except ModelUnavailableError as exc:
            return f"unloadable:{hashlib.sha256(str(exc).encode()).hexdigest()[:16]}"
        configs = [f for f in folder.glob("*.json") if f.is_file()] if folder.is_dir() else []
        digest = hashlib.sha256()
        for f in sorted(set(weights) | set(configs)):
            stat = f.stat()
            name = f.relative_to(folder).as_posix() if folder.is_dir() else f.name
            digest.update(f"{name}:{_file_digest(f.resolve(), stat.st_size, stat.st_mtime_ns)}\n".encode())
        return f"sha256:{digest.hexdigest()}"
    return f"{model}@{_hub_revision(model) or 'unknown revision'}"


@functools.lru_cache(maxsize=64)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """``file_sha256`` memoized per (path, size, mtime): a batch hashes a model's weights once."""
    return file_sha256(path)


def _hub_revision(repo_id: str) -> str | None:
    """The revision of the cached snapshot of ``repo_id``'s weights, or None (not cached, not a repo id)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except (ValueError, OSError, ImportError):
        return None
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None

