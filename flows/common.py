"""Plain helpers shared by the flows: configuration, output folders, links, cache keys, URLs.

Nothing here imports Prefect, so each helper is tested as a plain function.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from samgeo_pipeline import __version__
from samgeo_pipeline.config import SegmentConfig, load_config_file
from samgeo_pipeline.io.paths import output_dirs
from samgeo_pipeline.outputs.fingerprint import model_fingerprint
from samgeo_pipeline.redact import redact

#: Environment variable with the base URL that artifact links start with.
BASE_URL_ENV = "SAMGEO_OUTPUT_BASE_URL"
#: Where ``samgeo-pipeline serve OUTPUT_ROOT`` listens by default.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/"
#: Output files linked from the artifacts, in this order, when they exist.
LINKED_OUTPUTS = ("mask.tif", "water.gpkg", "quicklook.png", "probability.tif", "item.json", "manifest.json")
#: Suffixes the watch flow picks up.
GEOTIFF_SUFFIXES = (".tif", ".tiff")


def build_config(options: dict[str, Any] | None = None, config_path: str | os.PathLike[str] | None = None) -> SegmentConfig:
    """Layer defaults < YAML file < ``options`` (keys as :class:`SegmentConfig` / the CLI flags).

    Progress bars are turned off: flow logs are not terminals.

    Raises:
        ConfigError: an unknown option, a bad value, or an unreadable file.
    """
    config = SegmentConfig()
    if config_path:
        config = config.merged(load_config_file(config_path))
    config = config.merged(dict(options or {}))
    return config.merged({"progress": False})


def is_remote(spec: str) -> bool:
    """True for an fsspec URL other than a local file (``s3://b/x.tif``, ``memory://x``)."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", spec)
    return bool(match) and match.group(1).lower() not in ("file", "local")


def local_path(spec: str) -> str:
    """``file:///a/b`` -> ``/a/b``; other strings unchanged."""
    return spec[len("file://"):] if spec.startswith("file://") else spec


def url_path(spec: str) -> PurePosixPath:
    """The path part of a local path or fsspec URL (``s3://bucket/a/b.tif`` -> ``bucket/a/b.tif``).

    A URL's user-info (``user:password@``) is dropped, and an http(s) URL's query and fragment
    (``?X-Amz-Signature=...`` of a presigned URL): no credential becomes part of a folder or file name.
    """
    spec = local_path(spec)
    if is_remote(spec):
        scheme, rest = spec.split("://", 1)
        if scheme.lower() in ("http", "https"):
            rest = rest.split("#", 1)[0].split("?", 1)[0]
        host, sep, tail = rest.partition("/")
        spec = (host.rsplit("@", 1)[-1] + sep + tail).lstrip("/")  # memory:///a and memory://a name the same file
    return PurePosixPath(spec.replace(os.sep, "/"))


def image_output_dirs(inputs: Sequence[str], root: Path, relative_to: str | None = None) -> list[Path]:
    """One output folder per input below ``root`` (named by :func:`samgeo_pipeline.io.paths.output_dirs`).

    Without ``relative_to``: the input's name (plus a path hash when two inputs of the run share
    it), as the CLI does. With it (the watch flow passes the watched root): the input's folder
    relative to ``relative_to``, then its name, so equal names in different sub-folders do not
    collide. The name is the stem, plus the suffix when it is not ``.tif`` (``x.tiff`` ->
    ``x_tiff``): the watch flow starts one run per file, so ``x.tif`` and ``x.tiff`` must differ by
    name alone. Paths are normalised first (``a/../../b`` cannot climb out of ``relative_to``; an
    input outside it goes to the root's level) and every folder name is made safe, so each folder
    lies below ``root``.
    """
    paths = [PurePosixPath(posixpath.normpath(str(url_path(s)))) for s in inputs]
    subfolders: list[tuple[str, ...]] | None = None
    if relative_to is not None:
        base = PurePosixPath(posixpath.normpath(str(url_path(relative_to))))
        subfolders = []
        for path in paths:
            try:
                subfolders.append(path.parent.relative_to(base).parts)
            except ValueError:
                subfolders.append(())
    return output_dirs([Path(str(p)) for p in paths], root, subfolders, suffix_in_name=True)


def base_url(explicit: str | None = None) -> str:
    """Base URL of artifact links: ``explicit``, else ``$SAMGEO_OUTPUT_BASE_URL``, else the serve default."""
    url = explicit or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def output_url(path: Path, root: Path, base: str) -> str:
    """The http(s) URL of ``path`` (below ``root``) under ``base``, percent-encoded."""
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    return base + quote(rel)


def output_links(out_dir: Path, root: Path, base: str) -> dict[str, str]:
    """File name -> URL for the outputs of one image that exist."""
    return {name: output_url(out_dir / name, root, base) for name in LINKED_OUTPUTS if (out_dir / name).is_file()}


def segment_cache_key(checksum: str, config: SegmentConfig, out_dir: Path) -> str:
    """Cache key of one image's segment task: input bytes, parameters, model weights
    (:func:`~samgeo_pipeline.outputs.fingerprint.model_fingerprint`, as the reuse check), output folder, version."""
    parts = [checksum, config.params_hash(), model_fingerprint(config.model), str(Path(out_dir).resolve()), __version__]
    return "samgeo-segment-" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def artifact_key(prefix: str, name: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes) from a file name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "image"
    return f"{prefix}-{slug}"[:100]


def image_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The artifact table row of one image's summary (see ``flows.segment.summarize``); ``uncertain``:
    the coarse rule's reason when it abstained on the image."""
    tiles = summary.get("tiles") or {}
    area = summary.get("water_area_m2")
    seconds = summary.get("seconds")
    return {
        "image": url_path(summary["input"]).name,
        "status": summary["status"],
        "water area km²": round(area / 1e6, 4) if area is not None else None,
        "polygons": summary.get("polygons"),
        "tiles processed": (tiles.get("sam", 0) + tiles.get("coarse_only", 0)) if tiles else None,
        "tiles skipped": tiles.get("skipped") if tiles else None,
        "tiles failed": tiles.get("failed") if tiles else None,
        "seconds": round(seconds, 1) if seconds is not None else None,
        **({"uncertain": summary["uncertain"]} if summary.get("uncertain") else {}),
        **({"bands": summary["bands_source"]} if guessed_bands(summary) else {}),
    }


def guessed_bands(summary: dict[str, Any]) -> bool:
    """Whether the image's band mapping was guessed from its band count (the watch flow's ``bands_source``)."""
    return str(summary.get("bands_source") or "").startswith("guessed")


def run_markdown(summaries: Sequence[dict[str, Any]], root: Path, base: str) -> str:
    """The markdown summary of one segment run: a row per image with links, then the failures and the
    images the coarse rule abstained on (``uncertain``)."""
    uncertain = [s for s in summaries if s.get("uncertain")]
    done = sum(s["status"] in ("done", "skipped", "cached") and not s.get("uncertain") for s in summaries)
    also = f", {len(uncertain)} uncertain" if uncertain else ""
    lines = [
        "# samgeo-pipeline segment",
        "",
        f"{done} of {len(summaries)} image(s) done{also}; outputs in `{root}`, links under <{base}> "
        f"({how_to_open(str(root))}); STAC catalog: <{base}catalog.json>.",
        "",
        "| image | status | water km² | polygons | tiles processed/skipped/failed | seconds | outputs |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for s in summaries:
        row = image_row(s)
        links = " ".join(f"[{name}]({url})" for name, url in (s.get("links") or {}).items())
        tiles = (
            f"{row['tiles processed']}/{row['tiles skipped']}/{row['tiles failed']}"
            if row["tiles processed"] is not None else "-"
        )
        lines.append(
            f"| {row['image']} | {row['status']} | {_fmt(row['water area km²'])} | {_fmt(row['polygons'])} | "
            f"{tiles} | {_fmt(row['seconds'])} | {links or '-'} |"
        )
    failures = [s for s in summaries if s.get("error")]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- `{url_path(s['input']).name}`: {s['error']}" for s in failures]
    if uncertain:
        lines += ["", "## Uncertain: the coarse rule cannot tell water from land", "",
                  "No SAM and no mask for these unless `on_uncertain: write`. Map NIR/SWIR (`bands`), pass a "
                  "`threshold`, or set `on_uncertain: write`; see each image's quicklook.png and manifest.json.", ""]
        lines += [f"- `{url_path(s['input']).name}` ({s['status']}): {s['uncertain']}" for s in uncertain]
    guessed = [s for s in summaries if guessed_bands(s)]
    if guessed:
        lines += ["", "## Band order guessed", "",
                  "No watch rule, no `bands` option and no band descriptions gave these images' band order: it was "
                  "guessed from the band count, and a wrong guess gives wrong water without any error. Pin it with "
                  "a watch rule (`options: {bands: ...}`, see flows/watch_rules.example.yaml) or the `bands` option.", ""]
        lines += [f"- `{url_path(s['input']).name}`: {s['bands_source']}" for s in guessed]
    return "\n".join(lines) + "\n"


def how_to_open(root: str) -> str:
    """How the summary's links are answered: ``samgeo-pipeline serve`` for a local root; for a
    store URL (which ``serve`` cannot read), the store itself, with the reader's own credentials."""
    if not is_remote(root):
        return f"serve them with `samgeo-pipeline serve {root}`"
    scheme, _, path = root.partition("://")
    vsi = {"s3": "vsis3", "gs": "vsigs", "gcs": "vsigs", "az": "vsiaz", "abfs": "vsiaz"}.get(scheme.lower())
    read = f"e.g. `rio info /{vsi}/{path.rstrip('/')}/IMAGE/mask.tif`" if vsi else "with the store's own tools"
    return (f"the store's own URLs: public where the bucket policy allows it, else read them with your "
            f"credentials, {read}, or set `output_base_url` to a proxy in front of the store")


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


class RedactedLog(logging.LoggerAdapter):
    """A run logger whose lines never show a URL's credentials: each message is formatted, then
    passed through :func:`samgeo_pipeline.redact.redact`."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        super().__init__(logger, {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, redact(str(msg) % args if args else str(msg)), **kwargs)
