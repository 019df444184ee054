"""Run the lifecycle notebooks headless, in order, as `make demo` does.

``python -m tools.runner --rows 20000`` executes every ``notebooks/NN_*.ipynb`` with papermill, every cell
in order as JupyterLab's "Run All" does (parameters injected after each notebook's ``parameters`` cell),
and writes the executed copies with outputs, an HTML rendering of each and the kernels' logs to ``--output``
(``executed/``, or ``$MLOPS_STATE_DIR/executed``). ``--only 04 05`` runs some of them.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from utils.config import get_config, misspelled_variables, warn_unknown_variables
from utils.parameters import ParameterError, as_text, cast_param, example_of
from utils.platform import REPO_ROOT, get_spark, output_dir, state_dir, stop_spark


def lifecycle_notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered notebooks (``NN_stage.ipynb``) in run order."""
    folder = folder or REPO_ROOT / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def _kernel_manager_logging_to(log: IO[str]) -> type:
    """A kernel manager whose kernel process (and the JVM it starts) writes its own stdout and stderr to ``log``,
    and which shuts a kernel down by request alone.

    jupyter_client's ``shutdown_kernel`` first interrupts the kernel: SIGINT to its whole process group, the
    processes a notebook started included. A notebook that has finished needs no interrupt, and one that lands
    while the kernel is still handling a message is printed as "KeyboardInterrupt caught in kernel" (and a
    child process, e.g. a model server, prints its own KeyboardInterrupt). So at shutdown this manager only
    sends the ``shutdown_request`` and waits ``shutdown_wait_time`` for the kernel to exit, after which
    jupyter_client terminates it as usual. An interrupt asked for while the kernel runs (a cell timeout) is
    sent as before.
    """
    from jupyter_client import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # set by shutdown_kernel before it interrupts
                return
            await super()._async_interrupt_kernel()

    return QuietKernelManager


def kernel_log(out_dir: Path, notebook: Path) -> Path:
    """Where :func:`run_notebook` keeps what the kernel process printed outside the cells (JVM start-up, shutdown)."""
    return out_dir / "logs" / f"{notebook.stem}.kernel.log"


def cell_progress_wanted(stream: IO[str] | None = None) -> bool:
    """True when the runner should show papermill's cell-by-cell progress bar on ``stream`` (default stdout).

    Only on a terminal, and not when ``MLOPS_PROGRESS=0``: a notebook that first catches up on missing upstream
    state (a late joiner's ``--from 05``) can run for minutes in one cell, and the bar's clock shows it is alive;
    CI logs (not a terminal) stay one line per notebook.
    """
    from utils.progress import enabled

    stream = stream or sys.stdout
    return enabled() and bool(getattr(stream, "isatty", lambda: False)())


def run_notebook(path: Path, out_dir: Path, parameters: dict[str, object], timeout_s: int = 1800) -> Path:
    """Execute one notebook with papermill, every cell in order as JupyterLab's Run All does; returns the executed copy.

    Cell outputs go into :func:`partial_copy` as cells run, renamed to ``out_dir/<name>`` when every cell ran (so an
    interrupted run never replaces a good copy); what the kernel process itself prints (the JVM's start-up line, ipykernel's
    notes when it is terminated) goes to :func:`kernel_log`, not the terminal. The kernel is launched on IPC sockets and shut down by request,
    without an interrupt (see :func:`_kernel_manager_logging_to`). Raises papermill's
    ``PapermillExecutionError`` naming the failing cell.
    """
    import papermill
    from traitlets.config import Config

    out_dir.mkdir(parents=True, exist_ok=True)
    out, partial = out_dir / path.name, partial_copy(out_dir, path)
    log_path = kernel_log(out_dir, path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The IPC socket files live in a folder of their own, not next to the notebooks: a run killed before it can
    # shut its kernel down leaves them in the temporary folder rather than in notebooks/.
    sockets = tempfile.mkdtemp(prefix="mlops-kernel-")
    try:
        _execute(papermill, path, partial, parameters, timeout_s, log_path, Config(
            {"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel-ipc")}}))
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    partial.replace(out)  # only a finished run replaces the previous executed copy
    return out


def partial_copy(out_dir: Path, path: Path) -> Path:
    """Where a run of ``path`` writes as it goes: ``<name>.partial.ipynb``, renamed to ``<name>.ipynb`` when it finishes.

    A failed or interrupted run leaves its partial copy there and the previous finished copy untouched.
    """
    return out_dir / f"{path.stem}.partial.ipynb"


def _execute(papermill: Any, path: Path, out: Path, parameters: dict[str, object], timeout_s: int, log_path: Path,
             config: Any) -> None:
    with log_path.open("w", encoding="utf-8") as log:
        papermill.execute_notebook(
            str(path),
            str(out),
            parameters=parameters,
            cwd=str(path.parent),
            kernel_name="python3",
            execution_timeout=timeout_s,
            progress_bar=cell_progress_wanted(),
            report_mode=False,
            skip_cells_with_tag="",  # nbclient would skip cells tagged `skip-execution`; Run All skips none
            kernel_manager_class=_kernel_manager_logging_to(log),
            # The kernel talks to the runner over local sockets (IPC), not unencrypted TCP ports (over TCP
            # ipykernel warns that the traffic is "susceptible to eavesdropping").
            config=config,
        )


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (a closed terminal, ``timeout``, CI cancelling) handled as Ctrl-C, so the kernel is shut down cleanly."""
    raise KeyboardInterrupt


def stderr_outputs(nb: dict) -> list[tuple[int, str]]:
    """``(cell, text)`` of every stderr stream an executed notebook shows, in order.

    A cell is its execution count, the ``In [n]`` the executed copy shows (papermill's injected parameters cell
    included); a cell that did not run is its code-cell position, counted from 1.
    """
    found = []
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
                found.append((cell.get("execution_count") or number, "".join(text) if isinstance(text, list) else text))
    return found


# JupyterLab's page without the scripts it fetches from a CDN (require.js, MathJax, Mermaid): the page reads offline.
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mathjax %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
"""


def render_html(executed: Path) -> Path:
    """HTML rendering of an executed notebook, so results can be read without Jupyter (or a network)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(extra_loaders=[DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_filename(str(executed))
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def declared_parameters(notebooks: list[Path]) -> dict[str, tuple[type, Any]]:
    """Parameter name -> (declared type, default) over the notebooks' ``parameters`` cells (papermill reads them).

    Raises ``ValueError`` when a default is not a literal or two notebooks declare one name with different types.
    """
    import papermill

    declared: dict[str, tuple[type, Any]] = {}
    for nb in notebooks:
        for name, spec in papermill.inspect_notebook(str(nb)).items():
            try:
                default = ast.literal_eval(spec["default"])
            except (ValueError, SyntaxError):
                raise ValueError(f"{nb.name}: parameter {name!r} defaults to {spec['default']!r}, not a literal: "
                                 "a parameters cell declares each parameter's type by a literal default") from None
            if name in declared and declared[name][0] is not type(default):
                raise ValueError(f"{nb.name}: parameter {name!r} is declared {type(default).__name__}, "
                                 f"elsewhere {declared[name][0].__name__}: declare it alike in every notebook")
            declared.setdefault(name, (type(default), default))
    return declared


def resolve_parameters(flags: dict[str, str | None], declared: dict[str, tuple[type, Any]],
                       environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The value of each command-line parameter (``flags``: name -> text given, or None), checked against ``MLOPS_<NAME>``.

    Every ``MLOPS_<NAME>`` of a declared parameter must parse as its declared type, else ``ParameterError``
    (naming the parameter, the variable and the value) before any notebook runs. A flag wins over the
    default; a variable set alongside a flag must agree with it (a disagreement is refused rather than one
    silently ignored); without a flag the variable, then the notebook's default, gives the value.
    Returns name -> value for the names in ``flags``.
    """
    environ = dict(os.environ if environ is None else environ)
    problems, from_env = [], {}
    for name, (kind, default) in declared.items():
        variable = f"MLOPS_{name.upper()}"
        if variable in environ:
            try:
                from_env[name] = cast_param(name, environ[variable], kind, f"the environment variable {variable}",
                                            example=f"{variable}={as_text(example_of(kind, default))}")
            except ParameterError as exc:
                problems.append(str(exc))
    values = {}
    for name, text in flags.items():
        kind, default = declared.get(name, (str, None))
        variable = f"MLOPS_{name.upper()}"
        if text is None:
            values[name] = from_env.get(name, default)
            continue
        try:
            values[name] = cast_param(name, text, kind, f"--{name}", example=f"--{name} {as_text(example_of(kind, default))}")
        except ParameterError as exc:
            problems.append(str(exc))
            continue
        if name in from_env and from_env[name] != values[name]:
            problems.append(f"parameter {name!r}: --{name} {text} and {variable}={environ[variable]} disagree: "
                            f"unset {variable} or pass the same value (with make: make demo {name.upper()}=...)")
    if problems:
        raise ParameterError("; ".join(problems))
    return values


def _state_prefix() -> str:
    """The settings a copied command needs to open this run's state: ``MLOPS_STATE_DIR`` and the names (``""`` if none).

    ``MLOPS_STATE_DIR=<folder>`` when set, and every ``MLOPS_<FIELD>`` of the config that is set (a renamed
    catalog, schema or model), since the status page and the UI look for those names.
    """
    from dataclasses import fields

    from utils.config import Config

    # Not the notebook parameters (rows, seed): they size the data, and the runner itself sets MLOPS_ROWS and
    # MLOPS_SEED for its kernels; the resume hint passes them as --rows and --seed.
    names = ["MLOPS_STATE_DIR"] + [f"MLOPS_{f.name.upper()}" for f in fields(Config)
                                   if f.name not in ("thresholds", "rows", "seed")]
    return "".join(f"{n}={shlex.quote(os.environ[n])} " for n in names if os.environ.get(n))


def where_things_are(executed: Path) -> str:
    """Where a run left its results, as lines to print (each path follows ``MLOPS_STATE_DIR``)."""
    from utils.platform import lakehouse_dir, raw_data_dir, tracking_uri

    rows = [
        ("Executed notebooks (with outputs, and HTML):", executed),
        ("Delta tables:", f"{lakehouse_dir()}/<schema>.db/<table>"),
        ("MLflow runs and registry:", tracking_uri()),
        ("Raw files:", raw_data_dir()),
        ("Open the MLflow UI with:", f"{_state_prefix()}make ui   (then http://127.0.0.1:5000)"),
        ("Status page:", f"{_state_prefix()}make dashboard"),
    ]
    return "\n".join(f"{label:<45}{value}" for label, value in rows)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns a process exit code (2 for a bad parameter, 3 when another run holds the state)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", help="impressions to generate (default: MLOPS_ROWS, else the notebooks' 20000)")
    ap.add_argument("--seed", help="random seed (default: MLOPS_SEED, else the notebooks' 42)")
    ap.add_argument("--output", type=Path, default=None,
                    help="where the executed copies go (default executed/, or $MLOPS_STATE_DIR/executed)")
    ap.add_argument("--only", nargs="*", help="notebook name prefixes to run (e.g. 00 01)")
    ap.add_argument("--from", dest="start", help="run this notebook and every later one (a prefix, e.g. 04)")
    ap.add_argument("--timings", type=Path, help="also write {notebook: seconds} as JSON here")
    args = ap.parse_args(argv)
    args.output = args.output or output_dir("executed")
    misspelled = misspelled_variables()
    if misspelled:  # a rows variable missing its S would otherwise leave the default 20,000 rows in force
        print("bad parameter: " + "; ".join(f"{name} is not a variable this project reads: did you mean {known}?"
                                            for name, known in misspelled.items())
              + " (rename or unset it; utils.config.known_variables() lists the ones it reads)", file=sys.stderr)
        return 2
    warn_unknown_variables()  # an unknown MLOPS_* variable close to no known one is warned about
    try:
        declared = declared_parameters(lifecycle_notebooks())
        params = resolve_parameters({"rows": args.rows, "seed": args.seed}, declared)
        get_config()  # every MLOPS_<FIELD> and MLOPS_THRESHOLD_<NAME> is checked before any notebook runs
    except (ParameterError, ValueError) as exc:
        print(f"bad parameter: {exc}", file=sys.stderr)
        return 2
    available = lifecycle_notebooks()
    notebooks = available
    if args.only:
        notebooks = [p for p in notebooks if any(p.name.startswith(o) for o in args.only)]
    if args.start:
        first = [i for i, p in enumerate(available) if p.name.startswith(args.start)]
        notebooks = [p for p in notebooks if first and available.index(p) >= first[0]]
    if not notebooks:
        names = ", ".join(p.name for p in available)
        print(f"no notebook matches --only {' '.join(args.only or [])} --from {args.start or ''}".rstrip()
              + f": the notebooks are {names}", file=sys.stderr)
        return 2
    try:
        lock = hold_state_lock()  # held until this run ends, however it ends
    except StateInUseError as exc:
        print(exc, file=sys.stderr)
        return 3
    try:
        # get_param() prefers MLOPS_<NAME> to the injected parameter: set it to the value resolved here.
        os.environ["MLOPS_ROWS"] = str(params["rows"])
        os.environ["MLOPS_SEED"] = str(params["seed"])
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        started_engine = _start_engine()
        try:
            return _run_all(notebooks, args, params)
        finally:
            if started_engine:
                stop_spark()
                print("local Spark engine stopped")
    finally:
        if lock is not None:
            lock.close()


RUN_LOCK = "run.lock"
"""The file under the state folder a run holds locked while it runs (its pid and start time inside)."""


class StateInUseError(RuntimeError):
    """Another run holds the state folder's run lock."""


def hold_state_lock(folder: Path | None = None) -> IO[str] | None:
    """Take the run lock of ``folder`` (default the state folder) for as long as the returned file stays open.

    An ``fcntl.flock`` on ``<folder>/run.lock``, which the system releases when the file is closed or the
    process ends, however it ends; this run's pid and start time are written into the file. Raises
    ``StateInUseError``, one line naming the run that holds it (pid, start time) and how to use a state
    folder of its own. Returns None where ``fcntl`` does not exist (Windows): no lock is taken there.
    """
    try:
        import fcntl
    except ImportError:
        return None
    folder = folder or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / RUN_LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "pid unknown, just starting"
        lock.close()
        raise StateInUseError(
            f"another run ({holder}) is using the state folder {folder}: wait for it to finish, or give this run "
            "a state folder of its own, e.g. MLOPS_STATE_DIR=$HOME/mlops-2 make demo") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, started {dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}\n")
    lock.flush()
    return lock


def failure_summary(exc: BaseException, executed: Path | None = None) -> str:
    """One line saying why a notebook failed: ``In [n]: <exception name>: <its text>``, whatever the exception.

    Papermill's ``PapermillExecutionError`` carries the kernel's exception name and value. A cell that failed
    without an error output (IPython's ``UsageError`` for an unknown magic prints its text to stderr instead)
    is named by the last line it wrote to stderr in ``executed`` (the partial copy). Any other exception is
    named by its type and text, or by its cause's when its own text is empty.
    """
    where = f"In [{exc.exec_count}]: " if getattr(exc, "exec_count", None) is not None else ""
    name, text = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if name is None:  # not papermill's
        name, text = type(exc).__name__, str(exc).strip()
        cause = exc.__cause__ or exc.__context__
        if not text and cause is not None:
            text = f"(from {type(cause).__name__}: {str(cause).strip() or 'no message'})"
    if not text and executed is not None and getattr(exc, "exec_count", None) is not None:
        said = _last_stderr_line(executed, exc.exec_count)
        if said:
            head, sep, rest = said.partition(": ")
            name, text = (head, rest) if sep and head.isidentifier() else (name, said)
    return f"{where}{name}: {text or '(no message)'}".replace("\n", " ")


def _last_stderr_line(executed: Path, execution_count: int) -> str:
    """The last non-blank line the cell run as ``In [execution_count]`` in the notebook ``executed`` wrote to stderr
    ("" if none or unreadable; papermill puts an error cell first, so cells are found by their count, not position)."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return ""
    text = "".join("".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
                   for c in cells if c.get("execution_count") == execution_count
                   for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _start_engine() -> bool:
    """Start the local Spark engine the notebooks' kernels share (they are its clients); True if this run started it.

    An engine already running for this state folder (JupyterLab's, say) is used and left running.
    """
    from utils.local import engine

    if engine.status(state_dir()) is not None:
        return False
    get_spark()
    return True


def _run_all(notebooks: list[Path], args: argparse.Namespace, params: dict[str, object]) -> int:
    timings: list[tuple[str, float]] = []
    for nb in notebooks:
        start = time.perf_counter()
        print(f"running {nb.name} ...", flush=True)
        try:
            out = run_notebook(nb, args.output, params)
        except KeyboardInterrupt:
            # nbclient's cancelled tasks are collected on the way out; asyncio would log each one with a traceback.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            print(f"interrupted in {nb.name} after {time.perf_counter() - start:.0f} s: its partial copy is in "
                  f"{partial_copy(args.output, nb)}; run it again with {_state_prefix()}{Path(sys.executable).parent / 'python'} "
                  f"-m tools.runner --from {nb.name[:2]} --rows {params['rows']} --seed {params['seed']}",
                  file=sys.stderr)
            return 130
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            print(f"FAILED {nb.name}: {failure_summary(exc, partial_copy(args.output, nb))}", file=sys.stderr)
            traceback = "\n".join(getattr(exc, "traceback", None) or [])
            if traceback:
                from papermill.exceptions import strip_color

                print(strip_color(traceback), file=sys.stderr)
            print(f"the partially executed copy is in {partial_copy(args.output, nb)}; "
                  f"what the kernel printed besides is in {kernel_log(args.output, nb)}", file=sys.stderr)
            return 1
        render_html(out)
        timings.append((nb.name, time.perf_counter() - start))
        stderr = stderr_outputs(json.loads(out.read_text(encoding="utf-8")))
        note = f", {len(stderr)} stderr output(s) in cells {', '.join(f'In [{n}]' for n in sorted({n for n, _ in stderr}))}" if stderr else ""
        print(f"  done in {timings[-1][1]:.1f} s -> {out}{note}", flush=True)
    total = sum(t for _, t in timings)
    print(f"{len(timings)} notebooks in {total:.1f} s")
    print(where_things_are(args.output))
    if args.timings:
        args.timings.write_text(json.dumps(dict(timings), indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
