"""The notebook suite's state: one folder shared by the notebooks in run order, as in a workshop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``MLOPS_STATE_DIR`` when set (``make notebooks`` sets it and empties it first), else a temporary folder.

    Replaces the unit tests' fixture of the same name: the notebooks hand state to each other, so they share it.
    """
    root = Path(os.environ.get("MLOPS_STATE_DIR") or tmp_path_factory.mktemp("notebook-state")).resolve()
    os.environ["MLOPS_STATE_DIR"] = str(root)
    os.environ.setdefault("MLOPS_RAW_DIR", str(root / "raw"))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return root

