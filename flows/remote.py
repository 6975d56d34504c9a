"""Outputs a fleet can share: an ``output_root`` that is an fsspec URL (``s3://bucket/outputs``).

Each image is written to a local folder first (the library writes only local files), then uploaded
into ``<output_root>/<image>/``: every data file first, ``manifest.json`` last, each as one object
(one put, never half visible), so a reader that finds the manifest finds the whole set, and a
reuse check (:func:`remote_reusable`) reads the remote manifest. ``storage_options`` go to fsspec
(e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}`` for an S3-compatible store, or
``{"client_kwargs": {...}}``); credentials come from the usual environment. No Prefect here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import ManifestError, ManifestVersionError
from samgeo_pipeline.outputs.manifest import MANIFEST_NAME as MANIFEST
from samgeo_pipeline.outputs.manifest import Manifest
from samgeo_pipeline.outputs.reuse import find_reusable


def remote_fs(url: str, storage_options: dict[str, Any] | None):
    """``(filesystem, path)`` of an fsspec URL."""
    from fsspec.core import url_to_fs

    return url_to_fs(url, **(storage_options or {}))


def join(url: str, *parts: str) -> str:
    """``url`` + ``/part/part`` (URLs always use ``/``)."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts if p)])


def upload_outputs(local_dir: Path, remote_dir: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Upload the visible files of ``local_dir`` to ``remote_dir``: data first, ``manifest.json`` last.

    Hidden files (locks, temporaries) stay local. Returns the uploaded file names, in order.
    """
    fs, root = remote_fs(remote_dir, storage_options)
    names = sorted(p.name for p in Path(local_dir).iterdir() if p.is_file() and not p.name.startswith("."))
    ordered = [n for n in names if n != MANIFEST] + ([MANIFEST] if MANIFEST in names else [])
    for name in ordered:
        fs.put_file(str(Path(local_dir) / name), join(root, name))
    return ordered


def remote_reusable(
    remote_dir: str, checksum: str, config: SegmentConfig, storage_options: dict[str, Any] | None = None
) -> Manifest | None:
    """The remote manifest when it may be reused: :func:`samgeo_pipeline.outputs.reuse.find_reusable`'s
    test (same bytes, parameters, version, model; every output present) on the remote folder.

    The manifest is read into a temporary folder beside an empty stand-in for each output the store
    has, so the one reuse rule of the library decides; nothing is downloaded but the manifest.

    Raises:
        ManifestVersionError: the remote manifest was written by a newer samgeo-pipeline.
    """
    fs, root = remote_fs(remote_dir, storage_options)
    try:
        text = fs.cat_file(join(root, MANIFEST))
        manifest = Manifest.from_dict(json.loads(text), join(root, MANIFEST))
    except ManifestVersionError:
        raise
    except (FileNotFoundError, ManifestError, ValueError):
        return None
    fs.invalidate_cache(root)
    present = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    with tempfile.TemporaryDirectory(prefix="samgeo-reuse-") as tmp:
        (Path(tmp) / MANIFEST).write_bytes(text)
        for name in manifest.outputs:
            if isinstance(name, str) and "/" not in name and name in present:
                (Path(tmp) / name).touch()
        return find_reusable(Path(tmp), checksum, config)


def store_base_url(output_root: str, storage_options: dict[str, Any] | None) -> str | None:
    """The http(s) URL of an ``s3://`` ``output_root``: path style on an S3-compatible endpoint
    (``endpoint_url``), else AWS's virtual-hosted style (``https://BUCKET.s3[.REGION].amazonaws.com/KEY/``,
    the region from ``client_kwargs.region_name`` when given); None for other URLs."""
    if not output_root.startswith("s3://"):
        return None
    client = (storage_options or {}).get("client_kwargs") or {}
    endpoint = (storage_options or {}).get("endpoint_url") or client.get("endpoint_url")
    if endpoint:
        return join(endpoint, output_root[len("s3://"):]) + "/"
    bucket, _, key = output_root[len("s3://"):].partition("/")
    region = f".{client['region_name']}" if client.get("region_name") else ""
    return join(f"https://{bucket}.s3{region}.amazonaws.com", key) + "/"


def remote_summary(summary: dict[str, Any], remote_dir: str) -> dict[str, Any]:
    """``summary`` with its local output paths replaced by their URLs below ``remote_dir``."""
    out = dict(summary)
    out["out_dir"] = remote_dir
    out["outputs"] = [join(remote_dir, Path(p).name) for p in summary.get("outputs", [])]
    return out


def output_links(summary: dict[str, Any], output_root: str, base: str) -> dict[str, str]:
    """File name -> URL under ``base`` for the uploaded outputs of one image (as
    :func:`flows.links.output_links` for a local root)."""
    from urllib.parse import quote

    from flows.links import LINKED_OUTPUTS

    rel = summary["out_dir"][len(output_root.rstrip("/")) + 1:]
    present = {Path(p).name for p in summary.get("outputs", [])}
    return {name: base + quote(f"{rel}/{name}") for name in LINKED_OUTPUTS if name in present}
