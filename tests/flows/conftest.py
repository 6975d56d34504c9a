"""Fixtures of the Prefect flow tests: one temporary Prefect API for the session, in a temp PREFECT_HOME.

The environment is set before Prefect is first imported (Prefect reads its settings at import):
analytics off, a start-up timeout that suits a small shared machine, no result or log noise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="samgeo-prefect-home-"))
os.environ.update(
    {
        "PREFECT_HOME": str(_HOME),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
    }
)
os.environ.pop("PREFECT_API_URL", None)  # never talk to a server the developer has configured


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API (SQLite under the session's PREFECT_HOME) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def two_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two small demo scenes (river, lakes, nodata margin), 300 x 400 pixels."""
    from samgeo_pipeline.demo import write_demo_scene

    folder = tmp_path_factory.mktemp("flow-inputs")
    write_demo_scene(folder / "alpha.tif", 300, 400, seed=1)
    write_demo_scene(folder / "beta.tif", 300, 400, seed=2)
    return folder
