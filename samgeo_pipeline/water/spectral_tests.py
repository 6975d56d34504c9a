"""Published per-pixel water, snow and cloud tests on surface or top-of-atmosphere reflectance.

Every constant here comes from the literature, none was fitted to this project's data:

- **DSWE** (USGS Dynamic Surface Water Extent: Jones 2015, Remote Sensing 7(9); the 2019
  revision of its partial-surface-water tests; the same five tests run NASA's OPERA DSWx-HLS):
  five tests, each one bit of a diagnostic code, read into classes by how many pass
  (:func:`dswe_classes`).
- **Fmask** (Zhu & Woodcock 2012, Remote Sensing of Environment 118): the snow test (NDSI,
  NIR and green brightness), the potential-cloud-pixel tests that need no thermal band
  (whiteness, haze-optimised transform, NIR/SWIR1, SWIR2 brightness), and the water test on
  NDVI and NIR. Snow and ice share water's high MNDWI, so they are tested before water.

Arrays: every band is ``float32 (rows, cols)`` reflectance (0-1, scaled: 0.1 is 10 %), all on
the same grid; masks are ``bool (rows, cols)``. A band that the image lacks is ``None``; the
functions say what they do without it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: DSWE test 1: MNDWI above this.
DSWE_MNDWI = 0.0124
#: DSWE test 4 (partial surface water 1): MNDWI, SWIR1, NIR and NDVI limits.
PSW1_MNDWI, PSW1_SWIR1, PSW1_NIR, PSW1_NDVI = -0.44, 0.09, 0.15, 0.7
#: DSWE test 5 (partial surface water 2): MNDWI, blue, SWIR1, SWIR2 and NIR limits.
PSW2_MNDWI, PSW2_BLUE, PSW2_SWIR1, PSW2_SWIR2, PSW2_NIR = -0.5, 0.10, 0.30, 0.10, 0.25
#: DSWE classes (DSWx-HLS's interpreted layer): 0 not water, 1 high confidence, 2 moderate
#: confidence, 3 potential wetland ("partial surface water, conservative"), 4 low confidence.
NOT_WATER, HIGH, MODERATE, WETLAND, LOW = 0, 1, 2, 3, 4
#: Fmask snow: NDSI above, NIR above, green above.
SNOW_NDSI, SNOW_NIR, SNOW_GREEN = 0.15, 0.11, 0.10
#: Fmask potential cloud pixels: SWIR2 above, NDSI and NDVI below, whiteness below, HOT above
#: (HOT = blue - 0.5 red - 0.08), NIR / SWIR1 above.
CLOUD_SWIR2, CLOUD_NDSI, CLOUD_NDVI, CLOUD_WHITENESS, CLOUD_NIR_SWIR1 = 0.03, 0.8, 0.8, 0.7, 0.75
#: Fmask water: NDVI below 0.01 with NIR below 0.11, or NDVI in (0, 0.1) with NIR below 0.05.
WATER_NDVI, WATER_NIR, WATER_NDVI_LOW, WATER_NIR_LOW = 0.01, 0.11, 0.1, 0.05


@dataclass(frozen=True)
class Reflectances:
    """The bands of one array in reflectance (``float32 (rows, cols)`` each, None when absent).

    MNDWI (= Fmask's NDSI, the same ratio of green and SWIR1) and NDVI are computed once, on
    first use, and compared with every threshold the tests need.
    """

    green: np.ndarray | None = None
    red: np.ndarray | None = None
    nir: np.ndarray | None = None
    swir: np.ndarray | None = None
    blue: np.ndarray | None = None
    swir2: np.ndarray | None = None

    @functools.cached_property
    def mndwi(self) -> np.ndarray:
        """MNDWI = NDSI = (green - SWIR1) / (green + SWIR1), ``float32`` in [-1, 1] (0 where the sum is 0)."""
        assert self.green is not None and self.swir is not None
        return normalized_difference(self.green, self.swir)

    @functools.cached_property
    def ndvi(self) -> np.ndarray:
        """NDVI = (NIR - red) / (NIR + red), ``float32`` in [-1, 1] (0 where the sum is 0)."""
        assert self.nir is not None and self.red is not None
        return normalized_difference(self.nir, self.red)


def ratio_of(total: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """``diff / total`` as float32 clipped to [-1, 1], 0 where ``total`` is 0."""
    result = np.zeros(total.shape, np.float32)
    np.divide(diff, total, out=result, where=total != 0)
    return np.clip(result, -1.0, 1.0, out=result)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` as float32 in [-1, 1]; 0 where the sum is 0 (NDVI, MNDWI, NDSI, NDWI)."""
    return ratio_of(a + b, a - b)


def dswe_tests(r: Reflectances) -> tuple[np.ndarray, list[str]]:
    """DSWE's diagnostic code of every pixel: ``uint8 (rows, cols)``, bit ``k`` = test ``k + 1`` passed.

    1. MNDWI > 0.0124; 2. green + red > NIR + SWIR1 (MBSRV > MBSRN); 3. AWEI-shadow =
    blue + 2.5 green - 1.5 (NIR + SWIR1) - 0.25 SWIR2 > 0; 4. partial surface water 1: MNDWI >
    -0.44, SWIR1 < 0.09, NIR < 0.15, NDVI < 0.7; 5. partial surface water 2: MNDWI > -0.5, blue <
    0.10, SWIR1 < 0.30, SWIR2 < 0.10, NIR < 0.25.

    Needs green, red, NIR and SWIR1. Without blue, test 3 drops its blue term (it then passes
    less often) and test 5 its blue limit; without SWIR2, tests 3 and 5 drop their SWIR2 terms.

    Returns:
        The codes, and the terms dropped (empty with all six bands).
    """
    g, red, nir, s1 = r.green, r.red, r.nir, r.swir
    if g is None or red is None or nir is None or s1 is None:
        raise ValueError("DSWE needs green, red, NIR and SWIR1 reflectance")
    dropped = []
    nir_s1 = nir + s1
    awei = 2.5 * g - 1.5 * nir_s1
    psw2 = (r.mndwi > PSW2_MNDWI) & (s1 < PSW2_SWIR1) & (nir < PSW2_NIR)
    if r.blue is not None:
        awei += r.blue
        psw2 &= r.blue < PSW2_BLUE
    else:
        dropped.append("blue terms of tests 3 and 5")
    if r.swir2 is not None:
        awei -= 0.25 * r.swir2
        psw2 &= r.swir2 < PSW2_SWIR2
    else:
        dropped.append("SWIR2 terms of tests 3 and 5")
    tests = (
        r.mndwi > DSWE_MNDWI,
        (g + red) > nir_s1,
        awei > 0,
        (r.mndwi > PSW1_MNDWI) & (s1 < PSW1_SWIR1) & (nir < PSW1_NIR) & (r.ndvi < PSW1_NDVI),
        psw2,
    )
    code = np.zeros(g.shape, np.uint8)
    for bit, passed in enumerate(tests):
        code |= passed.view(np.uint8) << bit
    return code, dropped


def _class_table() -> np.ndarray:
    """``uint8 (32,)``: DSWE's class of each diagnostic code.

    Four or five tests passed: high confidence; three: moderate; two: low confidence, except tests
    4 and 5 together (potential wetland); test 5 alone: low confidence; any other single test or
    none: not water (the interpretation table of DSWE and DSWx-HLS).
    """
    table = np.zeros(32, np.uint8)
    for code in range(32):
        passed = bin(code).count("1")
        if passed >= 4:
            table[code] = HIGH
        elif passed == 3:
            table[code] = MODERATE
        elif code == 0b11000:
            table[code] = WETLAND
        elif passed == 2 or code == 0b10000:
            table[code] = LOW
    return table


DSWE_CLASS_OF_CODE = _class_table()


def dswe_classes(code: np.ndarray) -> np.ndarray:
    """``uint8 (rows, cols)`` DSWE classes (:data:`HIGH` ...) of :func:`dswe_tests` codes."""
    return np.take(DSWE_CLASS_OF_CODE, code)


def fmask_snow(r: Reflectances) -> np.ndarray:
    """Fmask's snow test: NDSI = (green - SWIR1) / (green + SWIR1) > 0.15, NIR > 0.11, green > 0.10.

    (Fmask also asks for a brightness temperature below 9.85 °C; no thermal band is read here.)
    """
    assert r.green is not None and r.nir is not None
    return (r.mndwi > SNOW_NDSI) & (r.nir > SNOW_NIR) & (r.green > SNOW_GREEN)


def fmask_cloud(r: Reflectances) -> np.ndarray | None:
    """Fmask's potential cloud pixels without the thermal test; None without blue.

    SWIR2 > 0.03 (when SWIR2 exists), NDSI < 0.8, NDVI < 0.8, whiteness (mean absolute deviation
    of blue, green, red from their mean, over that mean) < 0.7, HOT = blue - 0.5 red - 0.08 > 0, and
    NIR / SWIR1 > 0.75. Clear water fails HOT and SWIR2; bright clouds pass all of them. Pixels
    that pass Fmask's water test (:func:`fmask_water`) are not cloud: hazy or frozen-rimmed lakes
    can pass the cloud tests, but thick cloud is never that dark in NIR.
    """
    if r.blue is None:
        return None
    b, g, red, nir, s1 = r.blue, r.green, r.red, r.nir, r.swir
    assert g is not None and red is not None and nir is not None and s1 is not None
    cloud = (b - 0.5 * red - 0.08 > 0) & (nir > CLOUD_NIR_SWIR1 * s1)
    if r.swir2 is not None:
        cloud &= r.swir2 > CLOUD_SWIR2
    cloud &= (r.mndwi < CLOUD_NDSI) & (r.ndvi < CLOUD_NDVI)
    mean = (b + g + red) / 3
    deviation = np.abs(b - mean) + np.abs(g - mean) + np.abs(red - mean)
    cloud &= (mean > 0) & (deviation < CLOUD_WHITENESS * mean)  # whiteness < 0.7, without a division
    not_water: np.ndarray = cloud & ~fmask_water(r)[0]
    return not_water


def fmask_water(r: Reflectances) -> tuple[np.ndarray, np.ndarray]:
    """Fmask's water test from red and NIR: ``(water, sure)``.

    Water: NDVI < 0.01 and NIR < 0.11, or 0 < NDVI < 0.1 and NIR < 0.05. ``sure``: NDVI < 0.01
    and NIR < 0.05 (both branches' strictest limits), for positive prompts.
    """
    assert r.red is not None and r.nir is not None
    low_ndvi = r.ndvi < WATER_NDVI
    water = low_ndvi & (r.nir < WATER_NIR)
    water |= (r.ndvi > 0.0) & (r.ndvi < WATER_NDVI_LOW) & (r.nir < WATER_NIR_LOW)
    return water, low_ndvi & (r.nir < WATER_NIR_LOW)
