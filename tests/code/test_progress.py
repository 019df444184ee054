"""Progress bars: every item comes through, with a bar on stderr, or silently when turned off."""

from __future__ import annotations

import pytest

from utils.progress import enabled, progress


def test_progress_yields_every_item_and_draws_a_bar(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MLOPS_PROGRESS", raising=False)
    assert enabled()
    assert list(progress(["a", "b", "c"], "letters")) == ["a", "b", "c"]
    assert "letters" in capsys.readouterr().err


@pytest.mark.parametrize("off", ["0", "false", "No"])
def test_progress_can_be_turned_off(off: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLOPS_PROGRESS", off)
    assert not enabled()
    assert list(progress(iter(range(3)), "numbers", total=3)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
