"""samgeo_pipeline: find water in orthoimagery and satellite imagery with Segment Anything.

Stages, one subpackage each (DESIGN.md has the tree): :mod:`.io` (opening rasters, bands,
reflectance, the tile grid, limits, output folders, atomic writes), :mod:`.water` (whole-image
statistics, the coarse water mask: DSWE and Fmask tests, fitted indices, RGB darkness; prompts),
:mod:`.sam` and :mod:`.models` (the model), :mod:`.outputs` (COG, GeoPackage, quicklook,
manifest, STAC); :mod:`.run` runs one raster (:mod:`.run.image`) and a batch (:mod:`.run.batch`).
Importing this package does not import Prefect.
"""

from samgeo_pipeline.config import SegmentConfig
from samgeo_pipeline.errors import (
    ConfigError,
    InputError,
    ModelUnavailableError,
    NotGeoreferencedWarning,
    RasterReadError,
    SamgeoPipelineError,
)

__version__ = "0.1.0"

__all__ = [
    "SegmentConfig",
    "SamgeoPipelineError",
    "ConfigError",
    "InputError",
    "RasterReadError",
    "ModelUnavailableError",
    "NotGeoreferencedWarning",
    "__version__",
]
