"""Water polygons of a mask read by windows: one valid Polygon per 4-connected water region.

**The rule.** Every 4-connected region of water pixels (value 1; pixels sharing an edge) is one
feature, a valid ``Polygon`` with its holes; the feature count is the mask's number of 4-connected
water components. Two water pixels that touch only at a corner belong to different features (whose
boundaries share that one point), inside a window or across a window border alike. 4-connectivity
is what makes every feature a valid Polygon: an 8-connected region whose pixels meet at a corner has
no valid Polygon (its ring would touch itself; GDAL's 8-connected tracing returns exactly such
invalid rings) and would need a MultiPolygon. It is also the default of ``gdal_polygonize``, QGIS
and ``rasterio.features.shapes``. The coarse mask drops small components by 8-connectivity, so a
component it keeps can be several polygons here.

**Independent of the windows.** The mask is read window by window (never whole). Per window:
4-connected labels (OpenCV), the shapes of those labels traced by ``rasterio.features.shapes`` in
*pixel coordinates* (integer corners, exact), and a union-find over the label pairs that face each
other across a window border (the same 4-connectivity) links the pieces of one region. A piece that
touches no window border is final at once. The pieces of a region that crosses borders wait
(compactly, as int32 vertices) until no window still to read can reach the region, and then only
they are dissolved: their outer rings, densified to unit steps on the window borders so that shared
edges match vertex for vertex, are merged with ``shapely.coverage_union_all``; their holes (which
never touch a window border) are put back unchanged; vertices left collinear are dropped. So the
result is the same set of polygons, vertex for vertex up to ring order and start, for any window
size. The cost is linear in pixels and vertices. Memory: one window, the pieces waiting for a
neighbour (a band along the front of windows read so far) and one batch of final polygons; the
merge of the largest region that crosses windows adds GEOS's working set for its outer rings
(~350 bytes a vertex).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.errors import GEOSException

CONNECTIVITY = 4
"""Pixel connectivity of one polygon: 4 (edge neighbours); see the module docstring."""
WINDOW_SIZE = 1024
"""Side of the mask windows read, labelled and traced at once. GDAL's polygonize costs ~12 ns for
every pixel it is given, water or not, and holds the GIL meanwhile (rasterio does not release it):
small windows skip more dry pixels (only each window's water bounding box is traced) and keep each
hold under ~13 ms, so the thread that drives the model is not kept waiting. On the 8192² benchmark
scene 1024² windows trace in half the time of 4096² ones; on a noisy mask with 63k regions, where
more pieces cross borders, they are still 10 % faster, though at 16384² its largest region's merge
peaks higher (1,360 MiB against 1,169) (``benchmarks/bench_polygons.py --window``)."""


class _UnionFind:
    """Disjoint sets of global label ids (ints); only ids that face a window border enter it."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent.get(x, x)
        return root

    def union_pairs(self, a: np.ndarray, b: np.ndarray) -> None:
        """Join ``a[i]`` with ``b[i]`` for each i (global ids, both > 0)."""
        if not len(a):
            return
        pairs = np.unique(np.stack([a, b], axis=1), axis=0)
        for x, y in pairs.tolist():
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)


def _from_shapes(
    pairs: Iterator[tuple[dict[str, Any], float]], chunk_vertices: int = 500_000
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Polygons from ``features.shapes`` output, in chunks built by vectorised calls.

    GeoJSON rings are lists of tuples (~100 bytes a vertex): every ``chunk_vertices`` vertices they
    become one array and one ``shapely.from_ragged_array`` call, so that they never pile up.

    Yields:
        ``(polygons, values, coords, ring_offsets, polygon_offsets)``: the chunk's polygons, their
        pixel values and the ragged arrays they were built from.
    """
    ring_sizes: list[int] = []
    ring_counts: list[int] = []
    values: list[float] = []
    coords: list[tuple[float, float]] = []

    def chunk() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        flat = np.fromiter(chain.from_iterable(coords), dtype=np.float64, count=2 * len(coords)).reshape(-1, 2)
        ring_offsets = np.concatenate([[0], np.cumsum(ring_sizes)])
        polygon_offsets = np.concatenate([[0], np.cumsum(ring_counts)])
        polygons = shapely.from_ragged_array(shapely.GeometryType.POLYGON, flat, (ring_offsets, polygon_offsets))
        result = polygons, np.asarray(values, dtype=np.int64), flat, ring_offsets, polygon_offsets
        for parts in (ring_sizes, ring_counts, values, coords):
            parts.clear()
        return result

    for geom, value in pairs:
        rings = geom["coordinates"]
        ring_counts.append(len(rings))
        values.append(value)
        for ring in rings:
            ring_sizes.append(len(ring))
            coords.extend(ring)
        if len(coords) >= chunk_vertices:
            yield chunk()
    if values:
        yield chunk()


def _drop_collinear(coords: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove the vertices where a closed ring goes straight on (and repeated points).

    Args:
        coords: ``(n, 2)`` vertices of consecutive closed rings (each ring ends with its first point).
        sizes: vertices per ring, closing point included.

    Returns:
        ``(coords, sizes)`` of the same rings without those vertices, each ring closed again.
    """
    ends = np.cumsum(sizes)
    closing = np.zeros(len(coords), bool)
    closing[ends - 1] = True
    points = coords[~closing]
    open_sizes = sizes - 1
    stop = np.cumsum(open_sizes)
    start = stop - open_sizes
    index = np.arange(len(points))
    prev = index - 1
    prev[start] = stop - 1
    nxt = index + 1
    nxt[stop - 1] = start
    d_in = points - points[prev]
    d_out = points[nxt] - points
    keep = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0] != 0
    ring_of = np.repeat(np.arange(len(sizes)), open_sizes)
    kept_sizes = np.bincount(ring_of[keep], minlength=len(sizes))
    kept = points[keep]
    new_sizes = kept_sizes + 1
    new_ends = np.cumsum(new_sizes)
    first_kept = np.cumsum(kept_sizes) - kept_sizes
    rank = np.arange(len(kept)) - np.repeat(first_kept, kept_sizes)
    out = np.empty((int(new_ends[-1]), 2), dtype=coords.dtype)
    out[np.repeat(new_ends - new_sizes, kept_sizes) + rank] = kept
    out[new_ends - 1] = kept[first_kept]
    return out, new_sizes


def _densify_on_lines(
    coords: np.ndarray, sizes: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split the ring segments that lie on a line ``x in xs`` or ``y in ys`` into unit steps.

    Args:
        coords: ``(n, 2)`` integer-valued vertices of consecutive closed rings.
        sizes: vertices per ring, closing point included.
        xs, ys: the window borders (pixel columns and rows).

    Returns:
        ``(coords, sizes)`` of the same rings with a vertex at every pixel corner along those lines.
    """
    a, b = coords[:-1], coords[1:]
    on_line = ((a[:, 0] == b[:, 0]) & np.isin(a[:, 0], xs)) | ((a[:, 1] == b[:, 1]) & np.isin(a[:, 1], ys))
    ends = np.cumsum(sizes)
    on_line[ends[:-1] - 1] = False  # the jump from one ring's closing point to the next ring
    steps = np.ones(len(a), np.int64)
    steps[on_line] = np.abs(b[on_line] - a[on_line]).sum(axis=1).astype(np.int64)
    segment = np.repeat(np.arange(len(a)), steps)
    k = np.arange(len(segment)) - np.repeat(np.cumsum(steps) - steps, steps)
    delta = (b - a) / steps[:, None]
    out = np.concatenate([a[segment] + delta[segment] * k[:, None], coords[-1:]])
    new_ends = np.concatenate([[0], np.cumsum(steps)])[ends - 1] + 1
    return out, np.diff(np.concatenate([[0], new_ends]))


def _polygon(coords: np.ndarray, sizes: np.ndarray) -> shapely.Polygon:
    """One polygon from its rings' vertices (shell first) and the ring sizes (closing points included)."""
    ring_offsets = np.concatenate([[0], np.cumsum(sizes)])
    polygon_offsets = np.array([0, len(sizes)])
    polygon: shapely.Polygon
    (polygon,) = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (ring_offsets, polygon_offsets))
    return polygon


_Piece = tuple[np.ndarray, np.ndarray]
"""A polygon waiting for its neighbours, compactly: ``int32 (n, 2)`` pixel-corner vertices of its
rings (shell first) and the ring sizes. 8 bytes a vertex instead of GEOS's 24."""


def _dissolve(pieces: list[_Piece], xs: np.ndarray, ys: np.ndarray) -> list[shapely.Polygon]:
    """The polygon of one 4-connected region from its pieces in several windows (pixel coordinates).

    The pieces' outer rings form a coverage: disjoint interiors, shared edges only on the window
    borders ``xs`` / ``ys``, where they match vertex for vertex once densified to unit steps. Their
    holes lie inside one window each (land touching a window border is outside that window's piece)
    and are kept as they are.
    """
    if len(pieces) == 1:
        coords, sizes = pieces[0]
        return [_polygon(coords.astype(np.float64), sizes)]
    shell_coords = np.concatenate([c[: s[0]] for c, s in pieces]).astype(np.float64)
    shell_sizes = np.array([s[0] for _, s in pieces])
    coords, sizes = _densify_on_lines(shell_coords, shell_sizes, xs, ys)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    shells = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (offsets, np.arange(len(sizes) + 1)))
    try:
        merged = shapely.coverage_union_all(shells)
    except GEOSException:  # not expected; overlay is slower but needs no matching vertices
        merged = shapely.union_all(shells)
    if merged.geom_type != "Polygon":  # not expected for one 4-connected region: stay valid
        whole = [_polygon(c.astype(np.float64), s) for c, s in pieces]
        return list(shapely.get_parts(shapely.union_all(whole)))
    rings = shapely.get_rings(merged)
    coords, sizes = _drop_collinear(shapely.get_coordinates(rings), shapely.get_num_coordinates(rings))
    holes = [(c[s[0] :], s[1:]) for c, s in pieces if len(s) > 1]
    if holes:
        coords = np.concatenate([coords, *(c.astype(np.float64) for c, _ in holes)])
        sizes = np.concatenate([sizes, *(s for _, s in holes)])
    return [_polygon(coords, sizes)]


def polygon_batches(ds: rasterio.io.DatasetReader, window_size: int = WINDOW_SIZE) -> Iterator[np.ndarray]:
    """Water polygons of an open mask dataset (value 1), in pixel coordinates, each region once.

    Args:
        ds: single-band uint8 mask (1 water), read by windows of ``window_size``².
        window_size: side of the windows.

    Yields:
        Arrays of ``shapely.Polygon`` with ``(col, row)`` pixel-corner coordinates, as they become
        final: one polygon per 4-connected water region, whatever the window size.
    """
    if window_size < 2:
        raise ValueError(f"window_size must be at least 2, got {window_size}")
    height, width = ds.height, ds.width
    cut_cols = np.arange(window_size, width, window_size, dtype=np.float64)
    cut_rows = np.arange(window_size, height, window_size, dtype=np.float64)
    links = _UnionFind()
    pending: dict[int, _Piece] = {}  # global id -> piece touching a window border
    bottom = np.zeros(width, np.int64)  # global ids along the last row of the previous window row
    next_id = 1
    for r0 in range(0, height, window_size):
        h = min(window_size, height - r0)
        last_row = r0 + h >= height
        left = np.zeros(h, np.int64)  # global ids along the last column of the window to the left
        for c0 in range(0, width, window_size):
            w = min(window_size, width - c0)
            last_col = c0 + w >= width
            water = ds.read(1, window=Window(c0, r0, w, h)) == 1
            count, labels = cv2.connectedComponents(water.view(np.uint8), connectivity=CONNECTIVITY, ltype=cv2.CV_32S)
            base = next_id - 1  # global id = base + local label
            next_id += count - 1
            on_border = np.zeros(count, bool)  # local labels that touch a border to another window
            if c0 > 0:  # link across the border with the window to the left
                edge = _global_ids(labels[:, 0], base)
                both = (left > 0) & (edge > 0)
                links.union_pairs(left[both], edge[both])
                on_border[labels[:, 0]] = True
            if r0 > 0:  # and with the window above
                edge = _global_ids(labels[0], base)
                above = bottom[c0 : c0 + w]
                both = (above > 0) & (edge > 0)
                links.union_pairs(above[both], edge[both])
                on_border[labels[0]] = True
            if not last_col:
                left = _global_ids(labels[:, -1], base)
                on_border[labels[:, -1]] = True
            if not last_row:
                bottom[c0 : c0 + w] = _global_ids(labels[-1], base)
                on_border[labels[-1]] = True
            else:
                bottom[c0 : c0 + w] = 0
            on_border[0] = False
            if count > 1:
                yield from _trace_window(water, labels, (r0, c0), on_border, base, pending)
            del water, labels
            # Regions that no later window can reach are final: dissolve each one's pieces. The
            # front: the last row of every window above a window not read yet, and this window's
            # last column (the next window's left neighbour).
            if pending:
                front = np.concatenate([bottom[bottom > 0], left[left > 0] if not last_col else []])
                still_open = {links.find(g) for g in np.unique(front).tolist()}
                yield from _final(pending, links, still_open, cut_cols, cut_rows)
    yield from _final(pending, links, set(), cut_cols, cut_rows)  # nothing is left open here


def _trace_window(
    water: np.ndarray, labels: np.ndarray, origin: tuple[int, int], on_border: np.ndarray, base: int,
    pending: dict[int, _Piece],
) -> Iterator[np.ndarray]:
    """Trace one window's regions: yield those final at once, keep in ``pending`` (by global id) the
    pieces of regions that touch a border to another window (``on_border``, by local label).

    Args:
        water: ``bool (h, w)`` of the window; labels: its 4-connected labels (``int32``, 0 dry).
        origin: ``(row, col)`` of the window's top-left pixel in the mask.
        base: global id = ``base`` + local label.
    """
    r0, c0 = origin
    # Trace only the water's bounding box: GDAL's cost grows with the pixels scanned.
    rows, cols = np.flatnonzero(water.any(axis=1)), np.flatnonzero(water.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    shapes = features.shapes(
        labels[box], mask=water[box], connectivity=CONNECTIVITY,
        transform=Affine.translation(c0 + int(cols[0]), r0 + int(rows[0])),
    )  # fmt: skip
    for polygons, values, coords, ring_offsets, polygon_offsets in _from_shapes(shapes):
        waiting = on_border[values]
        if not waiting.all():
            yield polygons[~waiting]
        vertices = coords.astype(np.int32)  # pixel corners: integers
        ring_sizes = np.diff(ring_offsets).astype(np.int32)
        for k in np.flatnonzero(waiting).tolist():
            r_a, r_b = polygon_offsets[k], polygon_offsets[k + 1]  # its rings
            piece = vertices[ring_offsets[r_a] : ring_offsets[r_b]].copy(), ring_sizes[r_a:r_b].copy()
            pending[base + int(values[k])] = piece
        del polygons, coords, vertices


def _global_ids(local: np.ndarray, base: int) -> np.ndarray:
    """Global ids (``base`` + local label) of a row or column of labels; 0 stays 0 (not water)."""
    return np.where(local > 0, local.astype(np.int64) + base, 0)


def _final(
    pending: dict[int, _Piece], links: _UnionFind, still_open: set[int], xs: np.ndarray, ys: np.ndarray
) -> Iterator[np.ndarray]:
    """Take the pieces of the regions whose root is not ``still_open`` out of ``pending``; dissolve them."""
    groups: dict[int, list[_Piece]] = {}
    for gid in list(pending):
        root = links.find(gid)
        if root not in still_open:
            groups.setdefault(root, []).append(pending.pop(gid))
    if groups:
        yield np.asarray([p for pieces in groups.values() for p in _dissolve(pieces, xs, ys)], dtype=object)
