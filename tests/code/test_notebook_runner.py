"""The headless runner and the notebooks' first cell: every cell runs, Databricks-only set-up does nothing locally."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from tools.runner import kernel_log, render_html, run_notebook, stderr_outputs
from utils import platform
from utils.platform import environment
from utils.project import DISTRIBUTION


def test_install_on_databricks_does_nothing_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: pytest.fail("no %pip may run locally"))
    monkeypatch.setattr(environment, "_dbutils", lambda: pytest.fail("no dbutils locally"))
    assert "Nothing to install" in platform.install_on_databricks()


def test_install_on_databricks_pip_installs_then_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    calls: list[tuple[str, str]] = []

    class Shell:
        def run_line_magic(self, name: str, line: str) -> None:
            calls.append((name, line))

    class Library:
        def restartPython(self) -> None:  # dbutils' own name
            calls.append(("restart", ""))

    class DbUtils:
        library = Library()

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    monkeypatch.setattr(environment, "_dbutils", lambda: DbUtils())
    platform.install_on_databricks()
    assert [name for name, _ in calls] == ["pip", "pip", "restart"]
    assert calls[0][1].split()[:3] == ["install", "--quiet", "-r"]
    assert calls[0][1].endswith("requirements-databricks.txt")
    assert calls[1][1].split()[:4] == ["install", "--quiet", "--no-deps", "-e"]
    assert Path(calls[1][1].split()[-1]) == platform.REPO_ROOT


WHEEL_URL = '{"url": "file:///Workspace/.bundle/dist/project-0.1.0-py3-none-any.whl", "archive_info": {}}'


@pytest.mark.parametrize(("direct_url", "installs", "stale"), [
    (WHEEL_URL, False, False),
    (WHEEL_URL, True, True),  # an older wheel (a cluster library left from another version): install this checkout
    ('{"url": "file:///Workspace/Users/ada/repo", "dir_info": {"editable": true}}', True, False),
    (None, True, False),  # a source tree's egg-info: how it was installed is not recorded
])
def test_install_on_databricks_skips_what_a_bundle_jobs_wheel_installed(
        monkeypatch: pytest.MonkeyPatch, direct_url: str | None, installs: bool, stale: bool) -> None:
    """A job task's library installed the requirements and the project's wheel: no second install, no restart (R20);
    unless the installed wheel's code is not this checkout's."""
    import base64
    import hashlib
    import importlib.metadata
    from types import SimpleNamespace

    def record(path: str) -> importlib.metadata.PackagePath:
        entry = importlib.metadata.PackagePath(path)
        digest = hashlib.sha256((platform.REPO_ROOT / path).read_bytes() + (b"# older" if stale else b"")).digest()
        entry.hash = importlib.metadata.FileHash("sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode())
        return entry

    import IPython

    calls: list[str] = []
    shell = SimpleNamespace(run_line_magic=lambda name, line: calls.append(name), user_ns={
        "dbutils": SimpleNamespace(library=SimpleNamespace(restartPython=lambda: calls.append("restart")))})
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: SimpleNamespace(
        read_text=lambda file: direct_url if (name, file) == (DISTRIBUTION, "direct_url.json") else None,
        files=[record("utils/__init__.py"), record("utils/config.py")]))
    said = platform.install_on_databricks()
    assert calls == (["pip", "pip", "restart"] if installs else [])
    assert ("wheel" in said) is not installs


def _notebook(*cells: nbformat.NotebookNode) -> dict:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def test_stderr_outputs_lists_stderr_streams_by_code_cell() -> None:
    nb = _notebook(nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2"))
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "fine\n"}]
    nb["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stderr", "text": ["Warn", "ing\n"]},
                                 {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
                                  "execution_count": 2}]
    assert stderr_outputs(nb) == [(2, "Warning\n")]  # not run: its position among the code cells
    nb["cells"][2]["execution_count"] = 3  # run after an injected parameters cell: the In [3] the copy shows
    assert stderr_outputs(nb) == [(3, "Warning\n")]
    nb["cells"][2]["outputs"] = []
    assert stderr_outputs(nb) == []


def test_run_notebook_runs_cells_a_runner_could_skip(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    tagged = nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('yes')")
    tagged.metadata["tags"] = ["nbval-skip", "skip-execution"]
    params = nbformat.v4.new_code_cell("rows = 1")
    params.metadata["tags"] = ["parameters"]
    source = tmp_path / "nb" / "01_t.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(params, tagged, nbformat.v4.new_code_cell("import sys\nprint('x', file=sys.stderr)"))))
    out = run_notebook(source, tmp_path / "out", {"rows": 2}, timeout_s=120)
    assert marker.read_text() == "yes"
    assert kernel_log(tmp_path / "out", source).exists()
    assert stderr_outputs(json.loads(out.read_text())) == [(4, "x\n")]  # In [4] of the executed copy, after the injected parameters


def test_a_failed_run_keeps_the_previous_copy_and_leaves_its_partial_beside_it(tmp_path: Path) -> None:
    from tools.runner import partial_copy

    source = tmp_path / "nb" / "02_t.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(nbformat.v4.new_code_cell("print('good run')"))))
    good = run_notebook(source, tmp_path / "out", {}, timeout_s=120)
    assert "good run" in good.read_text() and not partial_copy(tmp_path / "out", source).exists()
    source.write_text(json.dumps(_notebook(nbformat.v4.new_code_cell("print('started')\nraise RuntimeError('boom')"))))
    with pytest.raises(Exception, match="boom"):
        run_notebook(source, tmp_path / "out", {}, timeout_s=120)
    assert "good run" in good.read_text(), "the finished copy is kept"
    assert "boom" in partial_copy(tmp_path / "out", source).read_text()


def test_a_notebook_failing_on_an_unknown_magic_says_so_in_the_failed_line(tmp_path: Path, capsys) -> None:
    """IPython's UsageError leaves no error output, so papermill's own message is blank: the runner names it.

    In [3]: the runner's parameters go into a cell papermill injects first."""
    import argparse

    from tools.runner import _run_all

    source = tmp_path / "nb" / "03_m.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(nbformat.v4.new_code_cell("x = 1"),
                                           nbformat.v4.new_code_cell("%nosuchmagic foo"))))
    args = argparse.Namespace(output=tmp_path / "out", timings=None)
    assert _run_all([source], args, {"rows": 2000, "seed": 42}) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FAILED")]
    assert failed == ["FAILED 03_m.ipynb: In [3]: UsageError: Line magic function `%nosuchmagic` not found."]


def test_html_rendering_fetches_nothing(tmp_path: Path) -> None:
    import re

    nb = _notebook(nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("1 + 1"))
    nb["cells"][1]["outputs"] = [{"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {},
                                  "execution_count": 1}]
    path = tmp_path / "t.ipynb"
    path.write_text(json.dumps(nb))
    page = render_html(path).read_text()
    assert "Title" in page and not re.findall(r'(?:src|href)="https?://', page)


def test_kernel_noise_goes_to_the_log_not_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    cell = nbformat.v4.new_code_cell("import os\nos.write(2, b'noise from the kernel process\\n')")
    source = tmp_path / "nb" / "t.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(cell)))
    run_notebook(source, tmp_path / "out", {}, timeout_s=120)
    said = capfd.readouterr()
    assert "noise from the kernel process" not in said.err + said.out
    assert "noise from the kernel process" in kernel_log(tmp_path / "out", source).read_text()
    assert "without encryption" not in said.err + kernel_log(tmp_path / "out", source).read_text()  # IPC, not TCP


def test_a_finished_notebook_is_shut_down_without_an_interrupt(tmp_path: Path) -> None:
    """jupyter_client's shutdown sends SIGINT to the kernel's process group first; the runner's does not."""
    record = tmp_path / "signals.txt"
    child = ("import pathlib, signal, sys, time\n"
             f"out = pathlib.Path({str(record)!r})\n"
             "signal.signal(signal.SIGINT, lambda *a: out.write_text(out.read_text() + 'SIGINT\\n'))\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
             "out.write_text('ready\\n')\n"
             "time.sleep(60)\n")
    cell = nbformat.v4.new_code_cell(
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {child!r}])  # in the kernel's process group\n"
        f"while not __import__('pathlib').Path({str(record)!r}).exists():\n"
        "    time.sleep(0.05)\n"
        "print(child.pid)")
    source = tmp_path / "nb" / "t.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(cell)))
    out = run_notebook(source, tmp_path / "out", {}, timeout_s=120)
    pid = int("".join(json.loads(out.read_text())["cells"][0]["outputs"][0]["text"]).strip())
    assert record.read_text() == "ready\n", "the child process was sent SIGINT at shutdown"
    try:  # jupyter_client terminates what is left of the process group; do not leave the child behind
        os.kill(pid, 15)
    except ProcessLookupError:
        pass


def test_a_terminated_run_shuts_its_kernel_down_and_leaves_no_socket_files(tmp_path: Path) -> None:
    """SIGTERM (a closed terminal, `timeout`) ends the run as Ctrl-C does: no socket files left anywhere."""
    import signal
    import subprocess
    import sys
    import time

    started = tmp_path / "started"
    cell = nbformat.v4.new_code_cell(f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(120)")
    source = tmp_path / "nb" / "t.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(cell)))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    script = ("import signal, sys\nfrom pathlib import Path\n"
              "from tools.runner import _terminate_as_interrupt, run_notebook\n"
              "signal.signal(signal.SIGTERM, _terminate_as_interrupt)\n"
              "try:\n"
              f"    run_notebook(Path({str(source)!r}), Path({str(tmp_path / 'out')!r}), {{}}, timeout_s=300)\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted'); sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(Path(__file__).resolve().parents[2]),
                            env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 180
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in out, (out, err)
    assert "Traceback" not in err, err
    assert not list(source.parent.glob("kernel-ipc*")) and not list(scratch.glob("mlops-kernel-*"))


def test_ctrl_c_on_the_whole_run_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C in a terminal sends SIGINT to the runner, its kernel and the kernel's children at once."""
    import signal
    import subprocess
    import sys
    import time

    started = tmp_path / "started"
    cell = nbformat.v4.new_code_cell(
        "import pathlib, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"pathlib.Path({str(started)!r}).write_text('x')\n"
        "try:\n    time.sleep(120)\n"
        "except KeyboardInterrupt:  # as a Spark cell does: its JVM got the SIGINT too\n"
        "    raise RuntimeError('the JVM went away')")
    parameters = nbformat.v4.new_code_cell("rows = 2000\nseed = 42", metadata={"tags": ["parameters"]})
    source = tmp_path / "nb" / "00_t.ipynb"
    source.parent.mkdir()
    source.write_text(json.dumps(_notebook(parameters, cell)))
    script = ("import signal, sys\nfrom pathlib import Path\nimport tools.runner as r\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started with it ignored\n"
              f"r.lifecycle_notebooks = lambda folder=None: [Path({str(source)!r})]\n"
              f"sys.exit(r.main(['--output', {str(tmp_path / 'out')!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(Path(__file__).resolve().parents[2]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.startswith("interrupted in 00_t.ipynb") and err.count("\n") == 1, err  # nothing but the one line
    assert err.rstrip().endswith("-m tools.runner --from 00 --rows 2000 --seed 42"), err  # resumes at the same size
    assert "MLOPS_SEED=" not in err and "MLOPS_ROWS=" not in err, err  # set by the runner, not by the user


def test_the_notebook_stage_stops_at_once_on_a_state_folder_in_use(tmp_path: Path) -> None:
    """`make test`'s nbval stage takes the run lock too: a second run on the folder gets one line, not broken tables."""
    import subprocess
    import sys

    from tools.runner import hold_state_lock
    from utils.platform import REPO_ROOT

    state = tmp_path / "state"
    (tmp_path / "none").mkdir()
    lock = hold_state_lock(state)
    try:
        env = {**os.environ, "MLOPS_STATE_DIR": str(state)}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.notebooks.executed_copies", "-p",
                               "no:cacheprovider", "--fresh-state", "-q", str(tmp_path / "none")],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    finally:
        lock.close()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr and "MLOPS_STATE_DIR" in proc.stderr, proc.stderr
    assert (state / "run.lock").exists() and not (state / "engine").exists()  # nothing deleted, no engine started
