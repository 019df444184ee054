"""A chosen state folder (MLOPS_STATE_DIR) holds everything a run leaves: tables, MLflow, raw files, executed notebooks, reports."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tools import runner
from utils import dashboard, platform


def test_default_outputs_stay_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_STATE_DIR", raising=False)
    monkeypatch.delenv("MLOPS_RAW_DIR", raising=False)
    assert platform.output_dir("executed") == platform.REPO_ROOT / "executed"
    assert platform.raw_data_dir() == platform.REPO_ROOT / "data" / "raw"
    assert dashboard.default_out() == platform.REPO_ROOT / "reports" / "dashboard.html"


def test_everything_follows_a_chosen_state_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("MLOPS_RAW_DIR", raising=False)
    assert platform.output_dir("executed") == tmp_path.resolve() / "executed"
    assert platform.raw_data_dir() == tmp_path.resolve() / "raw"
    assert dashboard.default_out() == tmp_path.resolve() / "reports" / "dashboard.html"
    summary = runner.where_things_are(platform.output_dir("executed"))
    assert str(tmp_path.resolve()) in summary and ".lakehouse" not in summary
    monkeypatch.setenv("MLOPS_RAW_DIR", str(tmp_path / "elsewhere"))
    assert platform.raw_data_dir() == (tmp_path / "elsewhere").resolve()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_ui_opens_the_chosen_state(tmp_path: Path) -> None:
    plan = subprocess.run(["make", "-n", "ui"], cwd=platform.REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MLOPS_STATE_DIR": str(tmp_path)}, check=True).stdout
    assert f'--state-dir "{tmp_path}"' in plan and ".lakehouse" not in plan
    from utils import ui

    state = tmp_path.resolve()
    assert ui.store_paths(tmp_path) == (f"sqlite:///{state}/mlflow/mlflow.db", state / "mlflow" / "artifacts")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_every_documented_make_variable_is_one_the_makefile_reads() -> None:
    """`make databricks-smoke TARGET=serverless` as the README, the docs and the workflows write it: the Makefile's
    guard against misspelled variables must not stop it before it starts."""
    import re

    texts = [platform.REPO_ROOT / "README.md", *(platform.REPO_ROOT / "docs").glob("*.md"),
             *(platform.REPO_ROOT / ".github" / "workflows").glob("*.yml")]
    forms = {m.group(0) for p in texts if p.exists()
             for m in re.finditer(r"make [a-z-]+(?: [A-Z_]+=[\w<>-]+)+", p.read_text(encoding="utf-8"))}
    assert any("TARGET=" in f for f in forms) and any("ROWS=" in f for f in forms), forms
    for form in sorted(forms):
        target, *assignments = form.replace("<target>", "dev").split()[1:]
        proc = subprocess.run(["make", "-n", target, *assignments], cwd=platform.REPO_ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert "not a variable this Makefile reads" not in proc.stderr, (form, proc.stderr)
