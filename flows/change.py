"""Prefect flow ``change``: segment dated images of one place, then compare their water.

The images (files, folders, globs: as the segment flow takes them) are segmented by
:func:`flows.segment.segment_flow` (a subflow: reuse, GPU lock, artifacts as usual) into
``output_root/<image>/``; their output folders are then compared by
:func:`samgeo_pipeline.change.compare.run_change` into ``change_dir`` (default ``output_root/change``).
An image whose coarse rule abstained (``uncertain``, no mask) is left out and named in the log and
the artifact; a failed image fails the run (the segment flow raises). The artifact
``change-summary`` lists the dates (and where each came from), the class areas and links to the
outputs.

Run it locally with ``python flows/change.py IMAGE... --out DIR [--model none]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:  # Prefect loads this file by path
    sys.path.insert(0, _REPO)

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.inputs import is_remote
from flows.links import base_url, output_url
from flows.segment import segment_flow
from samgeo_pipeline.change.compare import CLASSES, run_change
from samgeo_pipeline.errors import ConfigError, UnsafePathError


@task(name="change-compare")
def compare(folders: list[str], out: str, dates: list[str] | None, crs: str | None, gsd: float | None) -> dict[str, Any]:
    """:func:`~samgeo_pipeline.change.compare.run_change` with the run's logger; returns a JSON-able summary."""
    logger = get_run_logger()
    result = run_change([Path(f) for f in folders], Path(out), dates, crs, gsd, log=logger.info)
    for item in result.left_out:
        logger.warning("left out of the comparison: %s", item["reason"])
    return {
        "out_dir": str(result.out_dir),
        "dates": [{"folder": str(d.folder), **d.date.to_dict(), "water_area_m2": a}
                  for d, a in zip(result.dates, result.date_area_m2, strict=True)],  # fmt: skip
        "left_out": result.left_out,
        "classes": {CLASSES[c]: a for c, a in result.class_area_m2.items() if result.class_pixels[c]},
        "outputs": [str(p) for p in result.outputs],
    }


def summary_markdown(summary: dict[str, Any], root: Path, base: str) -> str:
    """The ``change-summary`` artifact: dates, class areas, links."""
    lines = ["# Water change", "", "| date | from | water km² |", "|---|---|---|"]
    lines += [f"| {d['date']} | {d['source']} | {d['water_area_m2'] / 1e6:.4f} |" for d in summary["dates"]]
    lines += ["", "| class | km² |", "|---|---|"]
    lines += [f"| {name} | {area / 1e6:.4f} |" for name, area in summary["classes"].items()]
    if summary["left_out"]:
        lines += ["", "Left out:", *(f"- {item['reason']}" for item in summary["left_out"])]
    lines += ["", *(f"- [{Path(p).name}]({_link(Path(p), root, base)})" for p in summary["outputs"])]
    return "\n".join(lines)


def _link(path: Path, root: Path, base: str) -> str:
    """The served URL of an output below ``root``, else its path (a ``change_dir`` outside the root)."""
    return output_url(path, root, base) if root.resolve() in path.resolve().parents else str(path)


@flow(name="change", log_prints=True)
def change_flow(
    inputs: list[str],
    output_root: str,
    options: dict[str, Any] | None = None,
    config_path: str | None = None,
    change_dir: str | None = None,
    dates: list[str] | None = None,
    crs: str | None = None,
    gsd: float | None = None,
    output_base_url: str | None = None,
) -> dict[str, Any]:
    """Segment ``inputs`` (dated images of one place) into ``output_root``, then compare them.

    Args:
        inputs: image files, folders or globs (see :func:`flows.segment.segment_flow`).
        output_root: a local folder (the comparison reads the masks there).
        options, config_path: segment options, as in the segment flow.
        change_dir: where the comparison goes (default ``output_root/change``); never an image folder.
        dates: one date per image, in the order the inputs expand to (default: tags, else file names).
        crs, gsd: the comparison's grid (default: the earliest date's).
        output_base_url: start of the artifact links.

    Returns:
        The comparison's summary: dates with their source, class areas, outputs.

    Raises:
        ConfigError: ``output_root`` is a URL.
        UnsafePathError: ``change_dir`` is an image folder of the run.
    """
    if is_remote(output_root):
        raise ConfigError(f"{output_root}: the change flow needs a local output_root (it reads the masks there)")
    root = Path(output_root).expanduser().resolve()
    summaries = segment_flow(inputs, str(root), options, config_path, output_base_url=output_base_url)
    folders = [s["out_dir"] for s in summaries]
    out = Path(change_dir).expanduser().resolve() if change_dir else root / "change"
    if str(out) in folders:
        raise UnsafePathError(f"{out}: is the output folder of an image of this run; pass another change_dir")
    summary = compare(folders, str(out), dates, crs, gsd)
    create_markdown_artifact(summary_markdown(summary, root, base_url(output_base_url)), key="change-summary",
                             description=f"water change over {len(summary['dates'])} dates")  # fmt: skip
    return summary


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the change flow once, in this process.")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model")
    parser.add_argument("--bands")
    args = parser.parse_args()
    opts = {k: v for k, v in (("model", args.model), ("bands", args.bands)) if v}
    change_flow(args.inputs, args.out, opts or None)
