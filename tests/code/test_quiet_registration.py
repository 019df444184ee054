"""A successful registration says nothing on stderr (notebooks show the version as a table); anything else MLflow says still shows."""

from __future__ import annotations

import pytest

from tests.support import mlflow_restored, table


def test_register_prints_nothing_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    from utils import registry
    from utils.platform import configure_mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):  # MLflow's signature
            return model_input

    with mlflow_restored():
        configure_mlflow("quiet-registration")
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="echo", python_model=Echo(), pip_requirements=[])
        capsys.readouterr()
        first = registry.register(info.model_uri, name=table("mlops", "quiet_echo"))
        second = registry.register(info.model_uri, name=table("mlops", "quiet_echo"))
    said = capsys.readouterr()
    assert (str(first.version), str(second.version)) == ("1", "2")
    assert "registered model" not in said.err.lower() and "Created version" not in said.err, said.err


def test_the_quiet_filter_only_matches_mlflows_success_notes() -> None:
    from utils.registry import _MLFLOW_REGISTRATION_NOTE as note

    assert note.match("Successfully registered model 'a.b.c'.") and note.match("Created version '2' of model 'a.b.c'.")
    assert note.match("Registered model 'a.b.c' already exists. Creating a new version of this model...")
    assert not note.match("WARNING mlflow: something went wrong") and not note.match("Traceback (most recent call last):")


def test_notes_hidden_passes_other_stderr_through(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from utils.registry import registration_notes_hidden

    with registration_notes_hidden():
        print("Copied version '1' of model 'a.b.c' to version '1' of model 'a_prod.b.c'.", file=sys.stderr)
        print("something MLflow warns about", file=sys.stderr)
    assert capsys.readouterr().err == "something MLflow warns about\n"
