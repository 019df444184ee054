"""Shared fixtures: one session-scoped Spark, and an isolated state folder per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import LATE_JOINER
from utils.project import DISTRIBUTION


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point all local state (tables, MLflow, raw data) at a temporary folder for unit tests."""
    root = tmp_path_factory.mktemp("state")
    os.environ["MLOPS_STATE_DIR"] = str(root)
    os.environ["MLOPS_RAW_DIR"] = str(root / "raw")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return root


TEST_APP = f"{DISTRIBUTION}-tests"
"""The name the tests' Spark session asks for (a label: the local engine's sessions have no name of their own)."""

NOTEBOOK_SUITE = Path(__file__).resolve().parent / "notebooks"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the notebook suite (``tests/notebooks``, minutes long, its own state) out unless it is named on the command line."""
    if collection_path.resolve() != NOTEBOOK_SUITE:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(p == NOTEBOOK_SUITE or NOTEBOOK_SUITE in p.parents for p in named)


class _ActiveSpark:
    """Stands for the active local Spark session: ``get_spark()`` restarts it (in about a second) when a
    test moves ``MLOPS_STATE_DIR``, since a session serves one warehouse; this forwards to the current one."""

    def __getattr__(self, name: str):
        from utils.platform import get_spark

        return getattr(get_spark(TEST_APP), name)


@pytest.fixture(scope="session")
def late_joiner(spark) -> dict:
    """The example's silver and feature tables, built once per test session at 2,000 impressions (seed 5) under
    :data:`LATE_JOINER`'s names, as a workshop attendee joining late gets them: what the catch-up and rename tests
    start from (a minute's build each otherwise). ``built`` is what the first ``ensure_silver`` and
    ``ensure_features`` returned; ``created`` the tables they made. A test sets the same names with ``monkeypatch``."""
    from utils import lakehouse
    from utils.catchup import ensure_features, ensure_silver
    from utils.config import get_config

    with pytest.MonkeyPatch.context() as mp:
        for key, value in LATE_JOINER.items():
            mp.setenv(key, value)
        cfg = get_config()
        before = set(lakehouse.list_tables())
        built = (ensure_silver(2000, 5, cfg), ensure_features(2000, 5, cfg))
        created = sorted(set(lakehouse.list_tables()) - before)
    return {"built": built, "created": created}


@pytest.fixture(scope="session")
def spark(isolated_state: Path):
    """The local Spark session shared by every test (whichever one is current, see ``_ActiveSpark``)."""
    from utils.platform import get_spark

    get_spark(TEST_APP)
    yield _ActiveSpark()


@pytest.fixture(autouse=True)
def _stop_engines_of_moved_state(isolated_state: Path):
    """After a test that moved ``MLOPS_STATE_DIR`` (an empty state of its own), stop the engine it started there."""
    yield
    from utils.local import engine

    engine.stop_started(keep=isolated_state)


@pytest.fixture(scope="session", autouse=True)
def _stop_engines():
    """Stop every local Spark engine this test process started (the session's, and those of moved state folders)."""
    yield
    from utils.local import engine

    engine.stop_started()
