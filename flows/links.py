"""Links to a run's outputs in its artifacts, without Prefect: the base URL, each output's URL, and
how the links are answered (``samgeo-pipeline serve`` or the store itself).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from flows.inputs import is_remote

#: Environment variable with the base URL that artifact links start with.
BASE_URL_ENV = "SAMGEO_OUTPUT_BASE_URL"
#: Where ``samgeo-pipeline serve OUTPUT_ROOT`` listens by default.
DEFAULT_BASE_URL = "http://127.0.0.1:8000/"
#: Output files linked from the artifacts, in this order, when they exist.
LINKED_OUTPUTS = ("mask.tif", "water.gpkg", "quicklook.png", "probability.tif", "item.json", "manifest.json")


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
