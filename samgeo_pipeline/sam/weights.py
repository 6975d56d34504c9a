"""Which files a model folder's weights are read from: ``.safetensors`` inside the folder, nothing else.

``SamModel.from_pretrained(folder, use_safetensors=True)`` reads the file that ``config.json``'s
``transformers_weights`` names, else ``model.safetensors``, else ``model.safetensors.index.json``
and every shard its ``weight_map`` names. transformers loads a shard that is not a
``.safetensors`` file with ``torch.load`` (pickle), and follows names such as ``../other/x``, so
:func:`weight_files` checks every one of those files before ``from_pretrained`` is called. The
same list is what :func:`samgeo_pipeline.outputs.fingerprint.model_fingerprint` hashes: the files loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from samgeo_pipeline.errors import ModelUnavailableError

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
_FIX = ("; only .safetensors files inside the model folder are loaded (pickle weights can run code): convert them "
        "where you trust the files with SamModel.from_pretrained(DIR).save_pretrained(NEW_DIR)")  # fmt: skip


def weight_files(folder: Path, root: Path | None = None) -> list[Path]:
    """The files ``from_pretrained`` reads ``folder``'s weights from, each checked.

    Args:
        folder: a ``save_pretrained`` folder; a link to one (a fine-tuning ``last``/``best``) is
            resolved first.
        root: where every file must resolve to, ``folder`` by default. A Hugging Face cache
            snapshot's files are links into its repository's ``blobs/``: there it is the
            repository's cache folder (names must still lie inside the snapshot).

    Returns:
        The weights file, or the index followed by every shard it names (sorted, once each).

    Raises:
        ModelUnavailableError: no safetensors weights, or a file named (by ``config.json``, the
            index) that is not a ``.safetensors`` file, lies outside the folder (``..``, an
            absolute path, a link resolving outside) or is missing; one line naming the folder.
    """
    folder = folder.resolve()
    root = root.resolve() if root is not None else folder
    entry = _entry_name(folder)
    if entry is None:
        raise ModelUnavailableError(f"{folder}: no {SAFE_WEIGHTS} or {SAFE_INDEX}{_FIX}")
    first = _checked(folder, root, entry, "the weights file", (".safetensors", ".safetensors.index.json"))
    if not entry.endswith(".index.json"):
        return [first]
    shards = _index_shards(folder, first)
    return [first, *(_checked(folder, root, name, f"{first.name}'s shard", (".safetensors",)) for name in shards)]


def weights_present(folder: Path) -> bool:
    """Whether every weights file ``folder`` names exists: a hub snapshot lacking one (an
    interrupted download) is not cached yet. Whether they may be loaded is :func:`weight_files`' call."""
    folder = folder.resolve()
    entry = _entry_name(folder)
    if entry is None or not (folder / entry).is_file():
        return False
    if not entry.endswith(".index.json"):
        return True
    try:
        names = _index_shards(folder, folder / entry)
    except ModelUnavailableError:
        return True  # there but unreadable: weight_files says why
    return all((folder / name).is_file() for name in names)


def _entry_name(folder: Path) -> str | None:
    """The name ``from_pretrained`` starts from: config's ``transformers_weights``, else the first of
    ``model.safetensors`` and its index that exists, else None."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = None  # from_pretrained reports an unreadable config itself
    named = config.get("transformers_weights") if isinstance(config, dict) else None
    if named is not None:
        return named if isinstance(named, str) else repr(named)
    return next((name for name in (SAFE_WEIGHTS, SAFE_INDEX) if (folder / name).is_file()), None)


def _index_shards(folder: Path, index: Path) -> list[str]:
    """The shard names of an index's ``weight_map``, sorted, once each."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelUnavailableError(f"{folder}: unreadable {index.name} ({type(exc).__name__}){_FIX}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelUnavailableError(f"{folder}: {index.name} has no weight_map{_FIX}")
    names = set(weight_map.values())
    for name in names:
        if not isinstance(name, str):
            raise ModelUnavailableError(f"{folder}: {index.name} names a shard that is not a file name ({name!r}){_FIX}")
    return sorted(names)


def _checked(folder: Path, root: Path, name: str, role: str, suffixes: tuple[str, ...]) -> Path:
    """``folder / name`` when it ends with one of ``suffixes``, lies inside ``folder`` and resolves under ``root``."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    reason = None
    if not name.endswith(suffixes) or "\x00" in name:
        reason = "not a .safetensors file"
    elif os.path.isabs(name) or PurePosixPath(name).is_absolute() or ".." in parts:
        reason = "outside the model folder"
    elif not (folder / name).resolve().is_relative_to(root):
        reason = "a link that resolves outside the model folder"
    elif not (folder / name).is_file():
        reason = "missing"
    if reason is not None:
        raise ModelUnavailableError(f"{folder}: {role} {name!r} is {reason}{_FIX}")
    return folder / name
