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


def test_status_line_reads_as_a_sentence() -> None:
    from utils.progress import status_line

    assert status_line("candidates", 5, 5, "model", 41.2) == "candidates: 5/5 models in 41 s"
    assert status_line("files", 0, 1, "file", 0.0, "orders") == "files: 0/1 file in 0 s · orders"


def test_saved_notebook_shows_the_final_progress_as_text(tmp_path) -> None:
    import json

    import nbformat

    from tools.runner import run_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from utils.progress import progress\nfor _ in progress(['a', 'b', 'c'], 'letters', unit='letter'):\n    pass")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nb").mkdir()
    source = tmp_path / "nb" / "t.ipynb"
    nbformat.write(nb, source)
    out = run_notebook(source, tmp_path / "out", {}, timeout_s=120)
    outputs = json.loads(out.read_text())["cells"][0]["outputs"]
    assert [o["output_type"] for o in outputs] == ["display_data"]  # one output, updated in place; nothing on stderr
    assert "".join(outputs[0]["data"]["text/plain"]) == "letters: 3/3 letters in 0 s"
    assert set(outputs[0]["data"]) == {"text/plain"}  # no widget for the HTML page to fetch
