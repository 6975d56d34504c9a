"""The demo scene (:mod:`samgeo_pipeline.demo`): known water and nodata, written where asked, the same for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from samgeo_pipeline.demo import demo_nodata, demo_water, write_demo_scene


def test_the_scene_shows_its_known_water_and_nodata(tmp_path: Path) -> None:
    path = write_demo_scene(tmp_path / "demo.tif", 200, 300)
    with rasterio.open(path) as ds:
        data = ds.read()
        assert (ds.count, ds.dtypes[0], ds.nodata, ds.crs.to_epsg()) == (4, "uint8", 0, 32633)
        assert ds.descriptions == ("red", "green", "blue", "nir") and ds.res == (2.0, 2.0)
    water, nodata = demo_water(200, 300), demo_nodata(200, 300)
    assert 0.1 < water.mean() < 0.5 and nodata[:, :15].all() and not nodata[:, 15:].any()
    assert (data[:, nodata] == 0).all() and (data[:, ~nodata] > 0).all()
    nir = data[3].astype(float)
    assert nir[water & ~nodata].mean() < 50 < nir[~water & ~nodata].mean()  # water is dark in NIR
    assert not [p for p in tmp_path.iterdir() if p.name != "demo.tif"]  # written atomically


def test_a_seed_gives_the_same_pixels_and_no_crs_no_georeferencing(tmp_path: Path) -> None:
    a = write_demo_scene(tmp_path / "a.tif", 64, 80, seed=3)
    b = write_demo_scene(tmp_path / "b.tif", 64, 80, seed=3)
    c = write_demo_scene(tmp_path / "c.tif", 64, 80, seed=4)
    plain = write_demo_scene(tmp_path / "plain.tif", 64, 80, crs=None)
    with rasterio.open(a) as da, rasterio.open(b) as db, rasterio.open(c) as dc, rasterio.open(plain) as dp:
        assert np.array_equal(da.read(), db.read()) and not np.array_equal(da.read(), dc.read())
        assert dp.crs is None
