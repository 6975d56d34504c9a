"""The run's GDAL options (:mod:`samgeo_pipeline.io.gdal_env`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio


class TestGdalEnv:
    """The run's GDAL options: a capped block cache, and cache-free reads of files read once."""

    @pytest.fixture(autouse=True)
    def _keep_cache_size(self) -> Iterator[None]:
        from rasterio.env import get_gdal_config, set_gdal_config

        before = get_gdal_config("GDAL_CACHEMAX")
        yield
        set_gdal_config("GDAL_CACHEMAX", before)

    @staticmethod
    def direct_io() -> object:
        """``GTIFF_DIRECT_IO`` of the innermost ``rasterio.Env`` (per thread)."""
        return rasterio.env.getenv().get("GTIFF_DIRECT_IO") if rasterio.env.hasenv() else None

    def test_the_cache_is_capped_and_direct_reads_only_when_asked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from rasterio.env import get_gdal_config, set_gdal_config

        from samgeo_pipeline.io.gdal_env import GDAL_CACHE_BYTES, gdal_env

        monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
        set_gdal_config("GDAL_CACHEMAX", 512 << 20)
        with gdal_env():
            assert (get_gdal_config("GDAL_CACHEMAX"), self.direct_io()) == (GDAL_CACHE_BYTES, None)
        with gdal_env(read_once=True):
            assert (get_gdal_config("GDAL_CACHEMAX"), self.direct_io()) == (GDAL_CACHE_BYTES, True)
        assert (get_gdal_config("GDAL_CACHEMAX"), self.direct_io()) == (512 << 20, None)  # put back

    def test_a_cache_size_set_by_the_caller_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from rasterio.env import get_gdal_config, set_gdal_config

        from samgeo_pipeline.io.gdal_env import gdal_env

        set_gdal_config("GDAL_CACHEMAX", 512 << 20)
        monkeypatch.setenv("GDAL_CACHEMAX", "512")
        with gdal_env(read_once=True):
            assert (get_gdal_config("GDAL_CACHEMAX"), self.direct_io()) == (512 << 20, True)
        monkeypatch.delenv("GDAL_CACHEMAX")
        with rasterio.Env(GDAL_CACHEMAX=32 << 20), gdal_env():
            assert get_gdal_config("GDAL_CACHEMAX") == 32 << 20

    def test_the_cap_holds_while_any_thread_is_inside_and_is_undone_after_the_last(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """GDAL's cache size is process-wide: one thread leaving must not lift another one's cap."""
        import threading

        from rasterio.env import get_gdal_config, set_gdal_config

        from samgeo_pipeline.io.gdal_env import GDAL_CACHE_BYTES, gdal_env

        monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
        original = 512 << 20
        set_gdal_config("GDAL_CACHEMAX", original)
        first_in, second_in, first_out, seen = threading.Event(), threading.Event(), threading.Event(), {}

        def first() -> None:
            with gdal_env():
                first_in.set()
                assert second_in.wait(20)
            first_out.set()

        def second() -> None:
            assert first_in.wait(20)
            with gdal_env():
                second_in.set()
                assert first_out.wait(20)
                seen["after the first left"] = get_gdal_config("GDAL_CACHEMAX")

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert seen == {"after the first left": GDAL_CACHE_BYTES}
        assert get_gdal_config("GDAL_CACHEMAX") == original

    def test_direct_reads_give_the_same_pixels(self, tmp_path: Path) -> None:
        from samgeo_pipeline.io.gdal_env import gdal_env

        values = np.random.default_rng(0).integers(0, 3, (700, 900), dtype=np.uint8)
        path = tmp_path / "work.tif"
        with rasterio.open(path, "w", driver="GTiff", width=900, height=700, count=1, dtype="uint8",
                           tiled=True, blockxsize=512, blockysize=512) as ds:  # fmt: skip
            ds.write(values, 1)
        window = rasterio.windows.Window(300, 200, 600, 500)  # across four blocks, two of them partial
        with gdal_env(read_once=True), rasterio.open(path) as ds:
            np.testing.assert_array_equal(ds.read(1, window=window), values[200:700, 300:900])
