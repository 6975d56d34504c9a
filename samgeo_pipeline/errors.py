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


class SamgeoPipelineWarning(UserWarning):
    """Root of the pipeline's warnings."""


class NotGeoreferencedWarning(SamgeoPipelineWarning):
    """The input has no CRS or no geotransform: outputs are in pixel coordinates."""
