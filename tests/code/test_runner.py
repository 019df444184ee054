"""The headless runner (`make demo`): parameters are validated against the notebooks' declared types first."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools import runner
from utils.parameters import ParameterError
from utils.platform import REPO_ROOT


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") or k in ("MLOPS_STATE_DIR", "MLOPS_RAW_DIR")}
    return subprocess.run([sys.executable, "-m", "tools.runner", *args], check=False, cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)


def test_make_demo_with_a_bad_mlops_rows_fails_naming_rows_the_variable_and_the_value(tmp_path) -> None:
    # `MLOPS_ROWS=abc make demo` runs `python -m tools.runner --rows 20000 --output executed`.
    proc = _run(["--rows", "20000", "--output", str(tmp_path / "executed")], MLOPS_ROWS="abc")
    assert proc.returncode == 2
    assert "'rows'" in proc.stderr and "MLOPS_ROWS" in proc.stderr and "'abc'" in proc.stderr
    assert "running" not in proc.stdout and not (tmp_path / "executed").exists(), "no notebook may run"


def test_bad_variable_of_any_declared_parameter_fails_before_any_notebook(tmp_path) -> None:
    proc = _run(["--output", str(tmp_path / "executed")], MLOPS_BAD_FRACTION="lots")
    assert proc.returncode == 2
    assert "'bad_fraction'" in proc.stderr and "MLOPS_BAD_FRACTION" in proc.stderr and "'lots'" in proc.stderr
    assert "float" in proc.stderr


def test_a_bad_threshold_variable_fails_before_any_notebook(tmp_path) -> None:
    proc = _run(["--output", str(tmp_path / "executed")], MLOPS_THRESHOLD_PSI="abc")
    assert proc.returncode == 2 and "running" not in proc.stdout and not (tmp_path / "executed").exists()
    assert "MLOPS_THRESHOLD_PSI" in proc.stderr and "'abc'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_misspelled_variable_is_refused_with_the_closest_name(tmp_path) -> None:
    """`MLOPS_ROW=5000 make demo` stops before any notebook instead of running the default 20,000 rows."""
    proc = _run(["--output", str(tmp_path / "executed")], MLOPS_ROW="5000")
    assert proc.returncode == 2 and "running" not in proc.stdout and not (tmp_path / "executed").exists()
    assert proc.stderr.startswith("bad parameter: MLOPS_ROW is not a variable this project reads: did you mean MLOPS_ROWS?")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_unknown_variable_close_to_no_known_one_is_only_warned_about(tmp_path) -> None:
    proc = _run(["--only", "99", "--output", str(tmp_path / "executed")], MLOPS_ZZZ="1")
    assert ("warning: MLOPS_ZZZ is not a variable this project reads, so it has no effect; "
            "utils.config.known_variables() lists the ones it reads") in proc.stderr.splitlines()
    assert "no notebook matches" in proc.stderr, "a warning does not stop the run"
    assert "MLOPS_STATE_DIR" not in proc.stderr, "known variables are not warned about"


def test_a_second_run_on_a_state_in_use_stops_at_once_naming_the_first(tmp_path) -> None:
    """Two `make demo` on one state folder: the second says which run holds it and how to use another state."""
    import time

    state = tmp_path / "state"
    held = runner.hold_state_lock(state)
    try:
        started = time.monotonic()
        proc = _run(["--only", "00", "--output", str(tmp_path / "executed")], MLOPS_STATE_DIR=str(state))
        assert time.monotonic() - started < 60 and proc.returncode == 3
        line = proc.stderr.strip()
        assert len(line.splitlines()) == 1 and f"another run (pid {os.getpid()}, started " in line, proc.stderr
        assert str(state) in line and "MLOPS_STATE_DIR=" in line and "make demo" in line
        assert "running" not in proc.stdout and not (tmp_path / "executed").exists()
    finally:
        held.close()
    runner.hold_state_lock(state).close()  # a finished run leaves the state free


def test_the_run_lock_is_released_when_its_process_dies(tmp_path) -> None:
    script = ("import pathlib, time; from tools import runner; "
              f"lock = runner.hold_state_lock(pathlib.Path({str(tmp_path)!r})); print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runner.StateInUseError, match=f"pid {holder.pid}"):
            runner.hold_state_lock(tmp_path)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    runner.hold_state_lock(tmp_path).close()  # killed, not finished: the lock went with the process


class _Ename(Exception):
    """Looks like papermill's PapermillExecutionError: the kernel's exception name and value, the failing cell."""

    def __init__(self, ename: str, evalue: str, exec_count: int = 2) -> None:
        super().__init__()
        self.ename, self.evalue, self.cell_index, self.exec_count = ename, evalue, exec_count - 1, exec_count
        self.traceback: list[str] = []

    def __str__(self) -> str:  # papermill's text: a rule and the traceback, empty for a UsageError
        return f"\n{75 * '-'}\nException encountered at \"In [{self.exec_count}]\":\n\n"


def test_a_failure_line_names_the_exception_whatever_it_is(tmp_path) -> None:
    import json

    assert runner.failure_summary(_Ename("KeyError", "'plant_id'")) == "In [2]: KeyError: 'plant_id'"
    assert runner.failure_summary(RuntimeError()) == "RuntimeError: (no message)"
    assert runner.failure_summary(RuntimeError("boom\nagain")) == "RuntimeError: boom again"
    try:
        try:
            raise ValueError("bad rows")
        except ValueError:
            raise RuntimeError()  # an empty exception raised while handling another
    except RuntimeError as exc:
        assert runner.failure_summary(exc) == "RuntimeError: (from ValueError: bad rows)"
    # an unknown magic: no error output, IPython's UsageError text is on the cell's stderr
    partial = tmp_path / "03_m.partial.ipynb"
    partial.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": "An Exception was encountered at In [2]"},  # papermill's, first
        {"cell_type": "code", "execution_count": 1, "outputs": []},
        {"cell_type": "code", "execution_count": 2, "outputs": [{"output_type": "stream", "name": "stderr",
                                           "text": ["UsageError: Line magic function `%nosuchmagic` not found.\n"]}]}]}))
    usage = _Ename("CellExecutionError", "")
    assert runner.failure_summary(usage, partial) == "In [2]: UsageError: Line magic function `%nosuchmagic` not found."
    assert runner.failure_summary(usage, tmp_path / "missing.ipynb") == "In [2]: CellExecutionError: (no message)"


@pytest.mark.parametrize(("args", "env", "example"), [
    (["--rows", "abc"], {}, "e.g. --rows 20000"),
    ([], {"MLOPS_ROWS": "abc"}, "e.g. MLOPS_ROWS=20000"),
    ([], {"MLOPS_BAD_FRACTION": "lots"}, "e.g. MLOPS_BAD_FRACTION=0.01"),
    ([], {"MLOPS_THRESHOLD_GATE_MIN_AUC": "high"}, "e.g. MLOPS_THRESHOLD_GATE_MIN_AUC=0.65"),
])
def test_a_bad_parameter_is_one_line_with_a_valid_example(tmp_path, args: list[str], env: dict, example: str) -> None:
    proc = _run([*args, "--output", str(tmp_path / "executed")], **env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("bad parameter: ")
    assert example in proc.stderr, proc.stderr


def test_a_prefix_that_matches_no_notebook_is_refused_with_the_list(tmp_path) -> None:
    for args in (["--only", "99"], ["--from", "99"]):
        proc = _run([*args, "--output", str(tmp_path / "executed")])
        assert proc.returncode == 2 and "no notebook matches" in proc.stderr and "00_setup.ipynb" in proc.stderr


def test_the_closing_hints_open_the_state_folder_of_the_run(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path / "my state"))
    text = runner.where_things_are(tmp_path / "executed")
    assert f"MLOPS_STATE_DIR='{tmp_path / 'my state'}' make ui" in text
    assert f"MLOPS_STATE_DIR='{tmp_path / 'my state'}' make dashboard" in text
    monkeypatch.delenv("MLOPS_STATE_DIR")
    assert "MLOPS_STATE_DIR" not in runner.where_things_are(tmp_path / "executed")
    monkeypatch.setenv("MLOPS_CATALOG", "acme")  # a renamed run: the dashboard must look for its names
    monkeypatch.setenv("MLOPS_SCHEMA", "recs")
    assert "MLOPS_CATALOG=acme MLOPS_SCHEMA=recs make dashboard" in runner.where_things_are(tmp_path / "executed")


def test_declared_parameters_come_from_the_parameters_cells() -> None:
    declared = runner.declared_parameters(runner.lifecycle_notebooks())
    assert declared["rows"] == (int, 20000)
    assert declared["seed"] == (int, 42)
    assert declared["bad_fraction"] == (float, 0.01)
    assert declared["scenario"][0] is str


DECLARED = {"rows": (int, 20000), "seed": (int, 42), "bad_fraction": (float, 0.01)}


@pytest.mark.parametrize(("flags", "environ", "expected"), [
    ({"rows": None, "seed": None}, {}, {"rows": 20000, "seed": 42}),
    ({"rows": None, "seed": None}, {"MLOPS_ROWS": "5000"}, {"rows": 5000, "seed": 42}),
    ({"rows": "3000", "seed": "7"}, {}, {"rows": 3000, "seed": 7}),
    ({"rows": "3000", "seed": None}, {"MLOPS_ROWS": "3000.0"}, {"rows": 3000, "seed": 42}),
])
def test_resolve_parameters(flags: dict, environ: dict, expected: dict) -> None:
    assert runner.resolve_parameters(flags, DECLARED, environ) == expected


@pytest.mark.parametrize(("flags", "environ", "named"), [
    ({"rows": "20000"}, {"MLOPS_ROWS": "abc"}, ["'rows'", "MLOPS_ROWS", "'abc'"]),
    ({"rows": "20000"}, {"MLOPS_ROWS": "5000"}, ["'rows'", "--rows 20000", "MLOPS_ROWS=5000", "disagree"]),
    ({"rows": "1e9x"}, {}, ["'rows'", "--rows", "'1e9x'"]),
    ({"rows": None}, {"MLOPS_BAD_FRACTION": "0,05"}, ["'bad_fraction'", "MLOPS_BAD_FRACTION", "'0,05'"]),
    ({"rows": None}, {"MLOPS_ROWS": "-5"}, ["'rows'", "MLOPS_ROWS", "'-5'", "out of range", "at least 2000"]),
    ({"rows": "1"}, {}, ["'rows'", "--rows", "out of range", "at least 2000"]),
    ({"rows": "0"}, {}, ["'rows'", "--rows", "out of range"]),
    ({"rows": None}, {"MLOPS_BAD_FRACTION": "1.5"}, ["'bad_fraction'", "MLOPS_BAD_FRACTION", "between 0 and 1"]),
])
def test_bad_or_conflicting_parameters_are_refused(flags: dict, environ: dict, named: list[str]) -> None:
    with pytest.raises(ParameterError) as err:
        runner.resolve_parameters(flags, DECLARED, environ)
    for text in named:
        assert text in str(err.value)


def test_bundle_job_parameters_parse_as_the_declared_types() -> None:
    """Databricks job parameters fill widgets; every one a job passes must be a declared parameter of its type."""
    from dataclasses import fields

    import yaml

    from utils.config import Config
    from utils.parameters import cast_param

    config_fields = {f.name for f in fields(Config)} - {"thresholds"}
    declared = runner.declared_parameters(runner.lifecycle_notebooks())
    bundle = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())
    values = [{k: v.get("default") for k, v in bundle["variables"].items()}]
    values += [t.get("variables", {}) for t in bundle["targets"].values()]
    jobs = yaml.safe_load((REPO_ROOT / "resources" / "jobs.yml").read_text())["resources"]["jobs"]
    checked = 0
    for job in jobs.values():
        given = [(p["name"], p["default"]) for p in job.get("parameters", [])]
        if not any("notebook_task" in t for t in job["tasks"]):  # python tasks get them as arguments instead
            args = " ".join(a for t in job["tasks"] for a in t["python_wheel_task"]["parameters"])
            assert all(f"{{{{job.parameters.{name}}}}}" in args for name, _ in given), job["name"]
            for name, text in given:  # a parameter the notebooks also declare (seed) has the notebooks' type
                if name in declared and not str(text).startswith("${"):
                    cast_param(name, str(text), declared[name][0], "the bundle")
                    checked += 1
            continue
        given += [kv for t in job["tasks"] for kv in t["notebook_task"].get("base_parameters", {}).items()]
        for name, text in given:
            if name in config_fields or name == "lakebase":  # config through job parameters (serverless has no
                continue  # cluster variables); lakebase is a switch read from its widget (utils.platform.environment)
            assert name in declared, f"job parameter {name!r} is declared by no notebook's parameters cell"
            texts = [str(text)]
            if str(text).startswith("${var."):
                var = str(text)[len("${var."):-1]
                texts = [str(v[var]) for v in values if var in v]
            for t in texts:
                if t.startswith("${resources."):  # an id the CLI fills in at deploy time
                    continue
                cast_param(name, t, declared[name][0], "the bundle")
                checked += 1
    assert checked >= 5


ALARMS = ("without encryption", "eavesdropping", "Task was destroyed but it is pending", "KeyboardInterrupt")


def test_a_successful_run_prints_what_happened_not_alarms(tmp_path) -> None:
    """The cheapest notebook, for real, in a state folder of its own: the terminal shows progress and results only."""
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "tools.runner", "--only", "00", "--rows", "2000"], check=False,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")},
                               "MLOPS_STATE_DIR": str(state), "MLOPS_RAW_DIR": str(state / "raw")})
    assert proc.returncode == 0, proc.stderr
    assert "running 00_setup.ipynb" in proc.stdout and "1 notebooks in" in proc.stdout
    said = proc.stdout + proc.stderr
    assert [a for a in ALARMS if a in said] == [], said
    kernel = runner.kernel_log(state / "executed", REPO_ROOT / "notebooks" / "00_setup.ipynb").read_text()
    assert [a for a in ("eavesdropping", "KeyboardInterrupt") if a in kernel] == [], kernel


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_cell_progress_shows_on_a_terminal_only_and_respects_mlops_progress(monkeypatch) -> None:
    monkeypatch.delenv("MLOPS_PROGRESS", raising=False)
    assert runner.cell_progress_wanted(_Stream(True))
    assert not runner.cell_progress_wanted(_Stream(False))  # CI logs: one line per notebook
    monkeypatch.setenv("MLOPS_PROGRESS", "0")
    assert not runner.cell_progress_wanted(_Stream(True))
