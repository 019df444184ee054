"""The catch-up helper: builds what is missing, skips what exists, and says which is which."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.catchup import catch_up
from utils.datagen import raw_manifest


def test_catch_up_builds_once_and_says_what_it_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_RAW_DIR", str(tmp_path / "raw"))
    first = catch_up("01", rows=300, seed=3)
    assert first == ["ensure_raw"] and raw_manifest() is not None
    assert "built 1 of 1 steps" in repr(first) and "raw files" in repr(first) and "built in" in repr(first)
    again = catch_up("01", rows=300, seed=3)
    assert again == [] and not again
    assert "nothing to build" in repr(again) and "already there" in repr(again)


def test_catch_up_refuses_an_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage '07'"):
        catch_up("07", rows=300, seed=3)
