"""One exception root and the typed warnings of the pipeline.

Every error a user can cause is a :class:`SamgeoPipelineError`; its message names the file or the
argument and, where there is one, the fix. Built-in mix-ins let callers catch by kind
(``except OSError`` still catches an unreadable raster).
"""

from __future__ import annotations


class SamgeoPipelineError(Exception):
    """Root of every error raised on purpose by samgeo_pipeline."""


class ConfigError(SamgeoPipelineError, ValueError):
    """An option or config-file value is invalid."""


class InputError(SamgeoPipelineError, ValueError):
    """An input raster cannot be used (not a raster, missing band, all nodata, ...)."""


class RasterReadError(SamgeoPipelineError, OSError):
    """An input raster could not be read (corrupt or truncated file)."""


class ModelUnavailableError(SamgeoPipelineError, OSError):
    """SAM weights could not be loaded (offline without a cache, bad directory, ...)."""


class SizeLimitError(InputError):
    """An input exceeds a size limit (pixels, tiles, or the free disk its work files need)."""


class UnsafePathError(SamgeoPipelineError, ValueError):
    """An output path would resolve outside its output root."""


class OutputConflictError(SamgeoPipelineError, FileExistsError):
    """An output folder holds the finished outputs of another input."""


class OutputWriteError(SamgeoPipelineError, OSError):
    """An output file could not be created (disk full, permissions, ...)."""


class ManifestError(SamgeoPipelineError, ValueError):
    """A ``manifest.json`` cannot be read as a manifest of samgeo-pipeline."""


class ManifestVersionError(ManifestError):
    """A ``manifest.json`` was written by a newer (or unknown) samgeo-pipeline: upgrade to read it."""


class CheckpointError(SamgeoPipelineError, ValueError):
    """A checkpoint file cannot be loaded safely (not plain tensors and values, corrupt, ...)."""


class SamgeoPipelineWarning(UserWarning):
    """Root of the pipeline's warnings."""


class NotGeoreferencedWarning(SamgeoPipelineWarning):
    """The input has no CRS or no geotransform: outputs are in pixel coordinates."""


class CoarseMaskWarning(SamgeoPipelineWarning):
    """The coarse water mask of an image is doubtful (RGB only, or water and land poorly separated)."""


class NodataWarning(SamgeoPipelineWarning):
    """The run reads as nodata pixels the file does not tag (a collar of zeros at the image border)."""


class SamInferenceError(SamgeoPipelineError, RuntimeError):
    """SAM failed on a tile for a reason other than memory (the image fails; the message names the tile)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, for one-line errors, logs and manifests; its type name
    when the message is empty.

    rasterio's "Read failed. See previous exception for details." is followed to its cause, which
    holds GDAL's reason. The one exception summary of the package (and of the flows).
    """
    while "previous exception" in str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def ignore_rasterio_georeference_warnings() -> None:
    """Filter rasterio's ``NotGeoreferencedWarning`` process-wide (modules that open rasters call it
    once, at import).

    rasterio warns each time a file without a geotransform is opened or written; the pipeline says
    it once per image itself (:class:`NotGeoreferencedWarning`, recorded in the manifest). One
    filter set once replaces ``warnings.catch_warnings()`` blocks, which change process-wide state
    and are not thread-safe when images run concurrently.
    """
    import warnings

    from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=RioNotGeoreferencedWarning)
