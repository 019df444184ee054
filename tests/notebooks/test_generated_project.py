"""A project generated with a team's answers runs its whole notebook suite (issue: the template's render matrix runs
fast checks for every combination; one combination runs everything).

``copier copy`` renders this repository with the answers of ``tests.code.test_template.ACME`` (project ``acme_recs``,
classic compute, GitHub Actions, a production catalog); the generated project then runs every notebook, as its own
``make demo`` does (``python -m tools.runner``), at the test suite's size (6,000 impressions; at 2,000 the gate refuses the first model) in a state folder of its own, with its own local engine.
Its MLflow registry must then hold the team's model under the team's names, and no name of the example.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from tests.code.test_template import _project_env, acme, template  # noqa: F401 - fixtures


def test_the_generated_project_runs_every_notebook_under_its_own_names(acme: Path, tmp_path: Path) -> None:  # noqa: F811
    from utils.local import jvm

    state = tmp_path / "acme-state"
    env = _project_env(MLOPS_JARS_DIR=str(jvm.jars_dir()), MLOPS_STATE_DIR=str(state), MLOPS_RAW_DIR=str(state / "raw"))
    proc = subprocess.run([sys.executable, "-m", "tools.runner", "--rows", "6000"], cwd=acme, env=env,
                          capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "7 notebooks in" in proc.stdout, proc.stdout[-2000:]
    assert sorted(p.name for p in (state / "executed").glob("0*.ipynb")) == sorted(
        p.name for p in (acme / "notebooks").glob("0*.ipynb"))

    uri = f"sqlite:///{state / 'mlflow' / 'mlflow.db'}"
    models = [m.name for m in MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()]
    assert "acme_recs.mlops.acme_recs_recommender" in models, models
    assert not [m for m in models if "plantly" in m], models
