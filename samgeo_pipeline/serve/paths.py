"""What a request may reach below the served root: URL paths to files, folder listings, byte ranges.

Standard library only. The rules (see :mod:`samgeo_pipeline.serve.server`): nothing outside the
root, symlinks followed while they stay below it, hidden entries and names that are not UTF-8
never served or listed, one ``bytes=`` range per request.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class PathRefused(Exception):
    """A request path that points outside the served root (or cannot be a file name): 403."""


class PathNotServed(Exception):
    """A request path that names nothing served: missing, hidden, or not resolvable: 404."""


def resolve_request_path(root: Path, url_path: str) -> Path:
    """The existing, visible file or folder below ``root`` that ``url_path`` names, symlinks resolved.

    Args:
        root: the served folder, already resolved (absolute, symlinks resolved).
        url_path: the path part of the request target, percent-encoded (``/scene/mask.tif``).

    Raises:
        PathRefused: ``..`` segments, an absolute path after the leading slash (``//etc``,
            ``/%2Fetc``), a backslash or NUL, or a target that resolves outside ``root``
            (through a symlink).
        PathNotServed: a hidden component (see :func:`resolve_below`) or a path that does not resolve.
    """
    text = unquote(url_path)
    if "\x00" in text or "\\" in text:
        raise PathRefused("NUL or backslash in path")
    rel = text[1:] if text.startswith("/") else text
    if rel.startswith("/") or os.path.isabs(rel):
        raise PathRefused("absolute path")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathRefused("'..' in path")
    if any(p.startswith(".") for p in parts):
        raise PathNotServed("hidden path")
    return resolve_below(root, root.joinpath(*parts))


def resolve_below(root: Path, path: Path) -> Path:
    """``path`` with every symlink resolved, checked to be ``root`` or a visible entry below it.

    Resolution is strict, so a missing entry, a symlink loop (``ELOOP``), an over-long name
    (``ENAMETOOLONG``) or an unreadable folder surfaces here as one exception, not later from
    ``stat`` or ``is_dir`` (whose errors differ between Python versions).

    Raises:
        PathRefused: the resolved path is outside ``root``.
        PathNotServed: ``path`` does not resolve, or a component of the resolved path below
            ``root`` starts with ``.`` (a visible symlink does not expose a hidden file).
    """
    try:
        target = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        raise PathNotServed(f"cannot resolve: {exc.strerror}") from exc
    if target == root:
        return target
    if root not in target.parents:
        raise PathRefused("path leads outside the served root")
    if any(p.startswith(".") for p in target.relative_to(root).parts):
        raise PathNotServed("hidden path")
    return target


def visible_entries(root: Path, folder: Path) -> list[tuple[str, bool]]:
    """``(name, is_folder)`` of the entries of ``folder`` that the server would serve, folders first.

    Entries that are hidden, lead outside ``root``, do not resolve (symlink loops, dangling links)
    or whose names are not UTF-8 (no URL names them) are left out rather than failing the listing.

    Raises:
        OSError: ``folder`` itself cannot be read.
    """
    entries = []
    for name in os.listdir(folder):
        if name.startswith(".") or not _is_utf8(name):
            continue
        try:
            mode = resolve_below(root, folder / name).stat().st_mode
        except (PathRefused, PathNotServed, OSError):
            continue
        entries.append((not stat.S_ISDIR(mode), name))
    return [(name, not is_file) for is_file, name in sorted(entries)]


def _is_utf8(name: str) -> bool:
    """False for a file name with undecodable bytes (``os.listdir`` keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(first, last)`` a ``Range`` header asks of a ``size``-byte file.

    Returns:
        None when the header is not a single ``bytes=`` range (the whole file is served then).

    Raises:
        ValueError: a malformed or unsatisfiable byte range (answered with 416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.match(spec)
    if not match or (not match.group(1) and not match.group(2)):
        raise ValueError(f"malformed range {header!r}")
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first > last or first >= size:
        raise ValueError(f"range {header!r} not satisfiable for {size} bytes")
    return first, min(last, size - 1)
