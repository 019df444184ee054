"""Where the code runs, and what runs there: paths, parameters, secrets, the Spark session and MLflow.

The facts of the place, with no pick of a backend: :func:`is_databricks`, the folders (:func:`state_dir`,
:func:`files_dir`, :func:`tmp_dir`, ...), notebook parameters (:func:`get_param`), secrets, the Java check
(``utils.platform.environment``), and what is built on them here: Unity Catalog schemas and
volumes (:func:`ensure_dirs`), the Spark session (:func:`get_spark`, :func:`stop_spark`, :func:`use_catalog`) and
MLflow (:func:`configure_mlflow`). The package's ``__init__`` re-exports both modules' public names and picks the backends.

It imports only base modules: ``utils.platform.environment``, ``utils.project``, ``utils.config``, ``utils.progress``
and the local engine (``utils.local.engine``, ``jvm``, ``catalog``), the last ones inside functions, only off
Databricks. Nothing happens at import time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utils.platform import environment
from utils.platform.environment import (
    REPO_ROOT,
    VOLUMES,
    EnvironmentProblem,
    artifact_root,
    current_user,
    files_dir,
    is_databricks,
    java_version,
    lakehouse_dir,
    mlflow_dir,
    raw_data_dir,
    registry_uri,
    state_dir,
    tmp_dir,
    tracking_uri,
    workspace_client,
)
from utils.project import DISTRIBUTION


def install_on_databricks() -> str:
    """Install this project into the notebook's environment on Databricks, then restart Python.

    Databricks: ``%pip install -r requirements-databricks.txt`` (only what the runtime lacks or must pin,
    never pyspark, delta-spark or Jupyter, so the runtime's own Spark stays) and ``%pip install --no-deps -e``
    of the repository (so ``utils`` imports after the restart wherever the files were deployed), through
    IPython's ``run_line_magic`` (the call a ``%pip`` line stands for), then ``dbutils.library.restartPython()``. Locally: nothing, since ``make install`` built the environment
    the kernel runs in; returns a sentence saying so. Nor in a bundle job, whose library or environment installed
    the requirements, then the project's wheel (:func:`_installed_as_wheel`): says so. Each notebook's first code
    cell calls it, so "Run All" works in a plain Jupyter kernel and on Databricks alike.
    """
    if not is_databricks():
        return "Nothing to install locally: the kernel runs in the environment `make install` built."
    if _installed_as_wheel():
        return f"Nothing to install: the job installed {DISTRIBUTION}'s wheel and requirements-databricks.txt."
    import shlex

    from IPython import get_ipython

    shell = get_ipython()
    # quoted: a Git folder's path may hold spaces ("/Workspace/Users/ada/My repo")
    shell.run_line_magic("pip", f"install --quiet -r {shlex.quote(str(REPO_ROOT / 'requirements-databricks.txt'))}")
    shell.run_line_magic("pip", f"install --quiet --no-deps -e {shlex.quote(str(REPO_ROOT))}")
    # the notebook's own dbutils: databricks.sdk was just upgraded in this process, its runtime module may not match
    dbutils = getattr(shell, "user_ns", {}).get("dbutils") or environment._dbutils()
    dbutils.library.restartPython()
    return "Installed; Python restarted."  # shown only where the restart did not end the cell


def _installed_as_wheel() -> bool:
    """True where :data:`DISTRIBUTION` is installed, by PEP 610's ``direct_url.json`` not editable (a wheel), and
    its ``utils`` files are this checkout's (the SHA-256 of each in the wheel's ``RECORD``).

    No distribution, no such record (a source tree's ``*.egg-info``, a legacy editable install), or an older wheel
    (a cluster library left from another version, which would serve stale code) is False: then the notebook installs.
    """
    import base64
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        return False
    direct_url = dist.read_text("direct_url.json")
    if not direct_url or json.loads(direct_url).get("dir_info", {}).get("editable", False):
        return False
    code = [f for f in dist.files or () if f.parts[0] == "utils" and f.hash is not None]
    return bool(code) and all(
        (REPO_ROOT / f).is_file() and f.hash.value == base64.urlsafe_b64encode(
            hashlib.sha256((REPO_ROOT / f).read_bytes()).digest()).rstrip(b"=").decode() for f in code)


_UC_READY: set[tuple[str, str]] = set()


def _run_uc_statements(statements: Sequence[str], catalog: str, how_to_choose: str) -> None:
    """Run Unity Catalog DDL on Databricks; raise EnvironmentProblem naming the statement and the privileges."""
    spark = get_spark()
    for statement in statements:
        try:
            spark.sql(statement)
        except Exception as exc:  # Spark Connect and classic raise different types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EnvironmentProblem(
                f"{statement} failed ({first[:300]}): use a catalog you may create schemas in "
                f"(USE CATALOG and CREATE SCHEMA; on Free Edition the catalog `workspace`) through {how_to_choose}, "
                f"or ask for those privileges on `{catalog}`") from exc


def ensure_model_schema(model_name: str) -> None:
    """Create the schema of registered model ``catalog.schema.model`` on Databricks if it is missing.

    Promotion copies a model version into another catalog (``<project>_prod``) whose schema nothing else
    creates. Locally a model name is only a registry key: nothing to do. Raises EnvironmentProblem
    (the statement, the privileges, how to pick another catalog) when the schema cannot be created, and
    ValueError for a name that is not three-level.
    """
    parts = model_name.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"model name {model_name!r} must be catalog.schema.model")
    if not is_databricks():
        return
    catalog, schema, _ = parts
    _run_uc_statements([f"CREATE SCHEMA IF NOT EXISTS `{catalog}`.`{schema}`"], catalog, "MLOPS_PROD_CATALOG")


def prod_catalog(cfg: Any = None) -> tuple[str, str]:
    """``(catalog, "")``: the catalog notebook 04 promotes the champion to; or ``("", why there is none)``.

    The catalog is ``Config.prod_catalog`` (``MLOPS_PROD_CATALOG``, or the job parameter / widget ``prod_catalog``
    the bundle sets per target). Locally an unset one is ``<project>_prod`` (``Config.catalog_for("prod")``):
    every catalog name resolves there. On Databricks nothing is guessed: an unset one means none (Free Edition
    has only ``workspace``, and creates catalogs in the UI only), and the catalog must exist and be yours to use
    (``WorkspaceClient().catalogs.get``). Everywhere, the catalog the notebook runs in is not a prod catalog
    to promote to: copying the champion onto itself would only make a new version of it.
    """
    from utils.config import get_config

    cfg = cfg or get_config()
    how = "set the job parameter or widget prod_catalog (the bundle's variable prod_catalog) or MLOPS_PROD_CATALOG"
    catalog = cfg.prod_catalog if is_databricks() else cfg.catalog_for("prod")
    if not catalog:
        return "", (f"no prod catalog is set: {how} to a catalog other than {cfg.catalog} that you may create "
                    "schemas in (on Free Edition, create one in Catalog Explorer first)")
    if catalog == cfg.catalog:
        return "", (f"the prod catalog is {catalog}, the catalog this runs in, so the champion is there already; "
                    f"to promote elsewhere, {how} to another catalog")
    if is_databricks():
        from databricks.sdk.errors import DatabricksError, NotFound

        try:
            workspace_client().catalogs.get(catalog)
        except NotFound:
            return "", f"the prod catalog {catalog} does not exist: create it in Catalog Explorer, or {how} to one that does"
        except DatabricksError as exc:
            first = (str(exc).split(". Config: ")[0].strip().splitlines() or [type(exc).__name__])[0][:200]
            return "", f"the prod catalog {catalog} cannot be used ({first}): ask for USE CATALOG and CREATE SCHEMA on it"
    return catalog, ""


def ensure_dirs() -> None:
    """Create the folders the lifecycle writes to.

    Locally: the state folders and the raw-data folder. Databricks: the config's schema and its
    volumes (``CREATE SCHEMA/VOLUME IF NOT EXISTS``, once per process; the catalog must exist and you
    need ``USE CATALOG`` and ``CREATE SCHEMA`` on it, or an existing schema with ``CREATE VOLUME``).
    """
    if is_databricks():
        from utils.config import get_config

        cfg = get_config()
        if (cfg.catalog, cfg.schema) not in _UC_READY:
            statements = [f"CREATE SCHEMA IF NOT EXISTS `{cfg.catalog}`.`{cfg.schema}`"]
            statements += [f"CREATE VOLUME IF NOT EXISTS `{cfg.catalog}`.`{cfg.schema}`.`{v}`" for v in VOLUMES]
            _run_uc_statements(statements, cfg.catalog, "the `catalog` job parameter or MLOPS_CATALOG")
            _UC_READY.add((cfg.catalog, cfg.schema))
        return
    for d in (lakehouse_dir(), mlflow_dir(), raw_data_dir(), tmp_dir(), *(files_dir(v) for v in VOLUMES[1:])):
        d.mkdir(parents=True, exist_ok=True)


_SESSION: dict[str, Any] = {}
"""This process's session on the local engine, by state folder (a session serves one warehouse)."""


def get_spark(app_name: str = DISTRIBUTION) -> Any:
    """The Spark session: the cluster's or serverless's on Databricks; locally a Spark Connect session.

    Locally every process (notebook kernel, test, job) is a client of one warm Spark Connect server per state
    folder (:mod:`utils.local.engine`), started on first use, as serverless notebooks are clients of an engine
    they do not own: ``sparkContext`` and RDDs are refused, callbacks and UDFs run in the server's workers.
    ``SPARK_MASTER=spark://host:7077`` instead gives a classic session on that cluster (:func:`_cluster_session`).
    ``app_name`` is kept for the callers' sake (a Connect session has no name of its own). Raises
    ``EnvironmentProblem`` (one line) when Java or the jars are missing or the engine cannot start.
    """
    from pyspark.sql import SparkSession

    if is_databricks():
        return SparkSession.builder.getOrCreate()
    from utils.local import engine, jvm

    master = os.environ.get("SPARK_MASTER", "local[*]")
    if not master.startswith("local"):
        return _cluster_session(master)
    state = state_dir()
    record = engine.status(state)
    cached = _SESSION.get(str(state))
    if cached is not None and record is not None and cached[0] == record["token"]:
        engine.make_default(cached[1], record["url"])
        return cached[1]
    java_version()
    ensure_dirs()
    _venv_on_path()
    try:
        conf = engine.server_conf(lakehouse_dir(), tmp_dir(), catalogs=[_configured_catalog()])
        spark = engine.connect(state, conf, say=lambda line: print(line, flush=True))
    except (jvm.MissingJars, engine.EngineError) as exc:
        raise EnvironmentProblem(str(exc)) from None
    record = engine.status(state)
    engine.explain_lost_engine(state)
    _SESSION[str(state)] = (record["token"] if record else "", spark)
    return spark


def _venv_on_path() -> None:
    """Executables this process starts by name (``mlflow models serve``) live next to the interpreter."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _cluster_session(master: str) -> Any:
    """A classic session of this process on a Spark cluster (``SPARK_MASTER=spark://...``): the one place a local
    process owns a JVM, because a standalone cluster's driver runs where its client runs."""
    from pyspark.sql import SparkSession

    from utils.local import catalog as local_catalog
    from utils.local import engine, jvm

    for inherited in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):  # from a parent that is a client of the engine
        os.environ.pop(inherited, None)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    java_version()
    ensure_dirs()
    try:
        conf = engine.server_conf(lakehouse_dir(), tmp_dir(), catalogs=[_configured_catalog()])
    except jvm.MissingJars as exc:
        raise EnvironmentProblem(str(exc)) from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_CONF_DIR", str(REPO_ROOT / "conf" / "spark"))
    _venv_on_path()
    builder = SparkSession.builder.master(master).appName(f"{DISTRIBUTION}-cluster")
    for key, value in conf.items():
        if not key.startswith("spark.connect."):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    local_catalog.register_tables(spark, lakehouse_dir())
    return spark


def _configured_catalog() -> str:
    from utils.config import get_config

    return get_config().catalog


def use_catalog(name: str) -> None:
    """Make sure Spark resolves tables of catalog ``name`` (Unity Catalog's three-level names).

    Databricks: nothing to do, Unity Catalog knows its catalogs. Locally: ``name`` becomes an alias of
    the session catalog (``utils.local.catalog``), so ``name.schema.table`` works in SQL and the API.
    """
    if is_databricks():
        return
    from utils.local import catalog as local_catalog

    local_catalog.alias_catalog(get_spark(), name)


def delete_table_files(location: str) -> None:
    """Delete a dropped table's files (``location`` as ``DESCRIBE DETAIL`` gives it).

    Databricks: nothing to do, Unity Catalog deletes a managed table's data itself. Locally: tables
    another session created are registered as external, so ``DROP TABLE`` keeps their files; this
    removes them, only inside the local warehouse folder.
    """
    if is_databricks():
        return
    from urllib.parse import unquote, urlparse

    path = Path(unquote(urlparse(location).path)) if location.startswith("file:") else Path(location)
    if path.is_dir() and path.resolve().is_relative_to(lakehouse_dir()):
        shutil.rmtree(path)


def refresh_tables() -> None:
    """Let this session see tables another process created since it started (no-op on Databricks)."""
    if is_databricks():
        return
    from utils.local import catalog as local_catalog

    local_catalog.register_tables(get_spark(), lakehouse_dir())


def stop_spark() -> None:
    """Stop the local engine of the current state folder, if one runs (never on Databricks).

    Every client of that engine (another notebook's kernel too) loses its session; the next
    :func:`get_spark` starts a new engine.
    """
    if is_databricks():
        return
    from utils.local import engine

    cached = _SESSION.pop(str(state_dir()), None)
    if cached is not None:
        with contextlib.suppress(Exception):  # the engine may be gone already; its session is then closed anyway
            cached[1].stop()  # releases the session while the engine still answers: no retries at exit
    os.environ.pop("SPARK_REMOTE", None)
    engine.stop(state_dir())


def experiment_path(name: str) -> str:
    """Where the MLflow experiment called ``name`` lives: ``/Users/<you>/<catalog>.<schema>.<name>`` on Databricks.

    Databricks experiments are workspace objects and their parent folder must exist; every user has
    ``/Users/<user name>``. The per-user folder keeps the attendees of one workshop apart, and the
    catalog and schema in the name keep dev, staging and prod runs apart (notebook 03 searches the
    experiment for its chosen run). Locally (and for a name that is already a path) the name is the name.
    """
    if not is_databricks() or name.startswith("/"):
        return name
    from utils.config import get_config

    cfg = get_config()
    return f"/Users/{current_user()}/{cfg.catalog}.{cfg.schema}.{name}"


def load_plot_backend() -> None:
    """In a notebook kernel, load matplotlib's backend now, so plots keep showing after MLflow autologging.

    The inline backend turns pyplot's interactive mode on when it is first loaded. MLflow's scikit-learn
    autologging draws its first figure (a confusion matrix) inside ``matplotlib.rc_context``; if that is where the
    backend first loads, leaving the context puts ``interactive`` back to False and no later figure of the notebook
    is shown. Outside a kernel, or once the backend is interactive, this does nothing.
    """
    from utils.progress import notebook_shell

    if notebook_shell() is None:
        return
    import matplotlib
    import matplotlib.pyplot as plt

    if not matplotlib.is_interactive():
        plt.switch_backend(matplotlib.get_backend())


def configure_mlflow(experiment_name: str | None = None) -> str:
    """Point MLflow at this platform's tracking server and registry; returns the experiment id.

    In a notebook it also loads the plot backend first (:func:`load_plot_backend`), so autologging cannot hide
    the notebook's later figures. On Databricks it sets ``MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC=true``
    unless it is set already: registering a version then uploads its files through the Files API, which works on
    default storage (Free Edition), where the temporary credentials of the older path are refused.
    """
    import logging

    import mlflow

    from utils.config import get_config

    load_plot_backend()
    ensure_dirs()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if is_databricks():
        # Model-version files go to Unity Catalog through the Files API (databricks-sdk), not with temporary
        # cloud credentials, which default storage (Free Edition) refuses; mlflow/mlflow#25986, #25987.
        os.environ.setdefault("MLFLOW_USE_DATABRICKS_SDK_MODEL_ARTIFACTS_REPO_FOR_UC", "true")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(registry_uri())
    if is_databricks():
        # Databricks autologging would log an extra run for every fit outside the notebooks' own runs.
        mlflow.autolog(disable=True)
    name = experiment_path(experiment_name or get_config().experiment_name)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        exp_id = mlflow.create_experiment(name, artifact_location=None if is_databricks() else artifact_root())
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def environment_report() -> dict[str, str]:
    """Versions of the pieces the workshop relies on, for the setup notebook.

    Installed distributions (``importlib.metadata``), plus what is imported and running: the pyspark module's
    version and, on Databricks, the runtime version (its Spark, not a pip wheel, is the one that runs there).
    """
    import importlib.metadata as md
    import platform as pyplatform

    import pyspark

    report = {"python": pyplatform.python_version(), "platform": "databricks" if is_databricks() else "local"}
    if is_databricks():
        report["databricks runtime"] = os.environ.get("DATABRICKS_RUNTIME_VERSION", "")
    # What runs, not only what pip installed: on Databricks the runtime's Spark wins over any wheel.
    report["pyspark (imported)"] = pyspark.__version__
    for pkg in ("pyspark", "delta-spark", "mlflow", "scikit-learn", "pandas", "pyarrow",
                "shap", "fairlearn", "databricks-feature-engineering", "databricks-sdk"):
        try:
            report[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            report[pkg] = "not installed"
    if not is_databricks():
        report["java"] = str(java_version())
    return report
