"""The ``catalog.json`` of an output root: one item link per finished folder (STAC Items of
:mod:`samgeo_pipeline.outputs.stac`), edited under a file lock on a local root and rebuilt from a
listing on an fsspec store (S3), which has no lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from samgeo_pipeline.io.atomic import write_text_atomic
from samgeo_pipeline.io.folders import file_lock
from samgeo_pipeline.outputs.stac import ITEM_NAME

CATALOG_NAME = "catalog.json"
#: Lock file of an output root's catalog (hidden: never served).
CATALOG_LOCK = ".samgeo-catalog.lock"
CATALOG_ID = "samgeo-pipeline-outputs"


def new_catalog() -> dict[str, Any]:
    """An empty catalog of an output root (JSON-able)."""
    import pystac

    catalog = pystac.Catalog(CATALOG_ID, "Water masks and polygons made by samgeo-pipeline, one Item per image.",
                             title="samgeo-pipeline outputs")  # fmt: skip
    return catalog.to_dict(include_self_link=False, transform_hrefs=False)


def _item_link(rel_folder: str) -> dict[str, Any]:
    return {"rel": "item", "href": f"./{rel_folder}/{ITEM_NAME}", "type": "application/geo+json", "title": rel_folder}


def with_items(catalog: dict[str, Any], folders: list[str]) -> dict[str, Any]:
    """``catalog`` with one item link per folder (relative to the root) added, sorted, no duplicates."""
    links = [link for link in catalog.get("links", []) if link.get("rel") != "item"]
    items = {link["href"]: link for link in catalog.get("links", []) if link.get("rel") == "item"}
    for folder in folders:
        link = _item_link(folder)
        items[link["href"]] = link
    return {**catalog, "links": links + [items[h] for h in sorted(items)]}


@contextmanager
def catalog_lock(root: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``root/.samgeo-catalog.lock`` (waits; the kernel frees it if the holder dies)."""
    with file_lock(root / CATALOG_LOCK):
        yield


def register_item(root: Path, out_dir: Path) -> Path | None:
    """Add a finished folder's Item to ``root/catalog.json``; None when it has no Item or manifest.

    Read, add, write to a temporary name and rename, all under :func:`catalog_lock`: processes
    finishing images of the same root (a shared folder, several workers) never lose each other's
    links, and a reader always sees a whole catalog.
    """
    root, out_dir = Path(root).resolve(), Path(out_dir).resolve()
    if not ((out_dir / ITEM_NAME).is_file() and (out_dir / "manifest.json").is_file()):
        return None
    rel = out_dir.relative_to(root).as_posix()
    path = root / CATALOG_NAME
    with catalog_lock(root):
        try:
            catalog = json.loads(path.read_text())
        except FileNotFoundError:
            catalog = new_catalog()
        except ValueError:
            catalog = new_catalog()  # a torn catalog cannot exist (atomic writes); rebuilt from what follows
        if not isinstance(catalog, dict) or catalog.get("id") != CATALOG_ID:
            from samgeo_pipeline.errors import OutputConflictError

            raise OutputConflictError(f"{path} is not the catalog of samgeo-pipeline (the user's own file?); "
                                      "write to another output root (--out)")  # fmt: skip
        write_text_atomic(path, json.dumps(with_items(catalog, [rel]), indent=2))
    return path


def rebuild_remote_catalog(fs: Any, root: str, max_rounds: int = 5) -> list[str]:
    """Write ``root/catalog.json`` on an fsspec store (S3) listing every finished folder below ``root``.

    Stores like S3 have no lock and no atomic read-modify-write, so the catalog is not edited: it is
    rebuilt from a listing (folders holding both ``item.json`` and ``manifest.json``) and written in
    one put (never half visible), then the listing is read again and the catalog rewritten while it
    lacks an Item found there. A writer whose put dropped an Item of a concurrent writer sees that
    Item in its second listing (it was uploaded before that writer listed again) and writes again,
    so the last put always lists every Item uploaded before it (S3's listings are strongly
    consistent). Call it after the folder's manifest is uploaded.

    Returns:
        The folders (relative to ``root``) the catalog lists.
    """
    root = root.rstrip("/")
    written: list[str] = []
    for _ in range(max_rounds):
        found = _remote_finished(fs, root)
        if set(found) <= set(written):
            break
        written = found
        catalog = with_items(new_catalog(), found)
        fs.pipe_file(f"{root}/{CATALOG_NAME}", json.dumps(catalog, indent=2).encode())
    return written


def _remote_finished(fs: Any, root: str) -> list[str]:
    fs.invalidate_cache()
    names = [p.rstrip("/") for p in fs.find(root)]
    prefix = fs._strip_protocol(root).rstrip("/") + "/"
    folders: dict[str, set[str]] = {}
    for name in names:
        rel = name[len(prefix):] if name.startswith(prefix) else name
        folder, _, base = rel.rpartition("/")
        if folder:
            folders.setdefault(folder, set()).add(base)
    return sorted(f for f, files in folders.items() if {ITEM_NAME, "manifest.json"} <= files
                  and not any(part.startswith(".") for part in f.split("/")))  # fmt: skip
