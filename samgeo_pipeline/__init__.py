"""samgeo_pipeline: find water in orthoimagery and satellite imagery with Segment Anything.

Stages, one module each: :mod:`raster` (inputs), :mod:`radiometry` (whole-image statistics),
:mod:`tiling`, :mod:`coarse` (the coarse water mask: DSWE and Fmask tests from :mod:`water_tests`
on reflectance from :mod:`reflectance`, fitted indices, RGB darkness), :mod:`prompts`, :mod:`sam`,
:mod:`writers` (COG),
:mod:`vectorize` (GeoPackage), :mod:`quicklook`, :mod:`manifest`; :mod:`pipeline` runs one raster
and :mod:`runner` a batch. Importing this package does not import Prefect.
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
