"""The only module that knows where the code runs: Databricks or the local embedded default.

Notebooks never branch on the platform; they call these functions.
Nothing happens at import time: Spark, MLflow and directories are set up by explicit calls.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
MIN_JAVA = 17

T = TypeVar("T")


class EnvironmentProblem(RuntimeError):
    """The machine lacks something the project needs; the message says what to install."""


def is_databricks() -> bool:
    """True inside a Databricks runtime (cluster, job or serverless notebook)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def _dbutils() -> Any:
    from databricks.sdk.runtime import dbutils  # only importable on Databricks

    return dbutils


def install_on_databricks() -> str:
    """Install this project into the notebook's environment on Databricks, then restart Python.

    Databricks: ``%pip install -r requirements.lock`` and ``%pip install --no-deps -e`` of the repository,
    through IPython's ``run_line_magic`` (the call a ``%pip`` line stands for), then
    ``dbutils.library.restartPython()``. Locally: nothing, since ``make install`` built the environment
    the kernel runs in; returns a sentence saying so. Each notebook's first code cell calls it, so
    "Run All" works in a plain Jupyter kernel and on Databricks alike.
    """
    if not is_databricks():
        return "Nothing to install locally: the kernel runs in the environment `make install` built."
    from IPython import get_ipython

    shell = get_ipython()
    shell.run_line_magic("pip", f"install --quiet -r {REPO_ROOT / 'requirements.lock'}")
    shell.run_line_magic("pip", f"install --quiet --no-deps -e {REPO_ROOT}")
    _dbutils().library.restartPython()
    return "Installed; Python restarted."


# ---------------------------------------------------------------- local paths


def state_dir() -> Path:
    """Root of all local state (tables, MLflow, tmp); ``MLOPS_STATE_DIR`` moves it."""
    return Path(os.environ.get("MLOPS_STATE_DIR", REPO_ROOT / ".lakehouse")).resolve()


def output_dir(name: str) -> Path:
    """A folder of results for people to read (``executed``, ``reports``): ``<repo>/<name>`` by default, or
    ``$MLOPS_STATE_DIR/<name>`` when a state folder is chosen, so each state keeps its own results."""
    return (state_dir() if os.environ.get("MLOPS_STATE_DIR") else REPO_ROOT) / name


def lakehouse_dir() -> Path:
    """Spark's warehouse folder: local Delta tables live in ``<schema>.db/<table>`` under it."""
    return state_dir() / "tables"


def mlflow_dir() -> Path:
    """Folder holding the local MLflow SQLite database and artifacts."""
    return state_dir() / "mlflow"


def raw_data_dir() -> Path:
    """Where generated raw files land: ``MLOPS_RAW_DIR``, else ``$MLOPS_STATE_DIR/raw`` when a state folder is
    chosen, else ``data/raw``; on Databricks the volume ``/Volumes/<catalog>/<schema>/raw``."""
    if is_databricks():
        from utils.config import get_config

        cfg = get_config()
        return Path(f"/Volumes/{cfg.catalog}/{cfg.schema}/raw")
    if os.environ.get("MLOPS_RAW_DIR"):
        return Path(os.environ["MLOPS_RAW_DIR"]).resolve()
    return state_dir() / "raw" if os.environ.get("MLOPS_STATE_DIR") else (REPO_ROOT / "data" / "raw").resolve()


def tmp_dir() -> Path:
    """Scratch space for the JVM and Spark, inside the project instead of ``/tmp``."""
    return state_dir() / "tmp"


def ensure_dirs() -> None:
    """Create the local state folders (no-op on Databricks)."""
    if is_databricks():
        return
    for d in (lakehouse_dir(), mlflow_dir(), raw_data_dir(), tmp_dir()):
        d.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- parameters


def _cast(value: Any, default: T) -> T:
    if default is None or isinstance(value, type(default)) and not isinstance(default, bool):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value  # type: ignore[return-value]
        return str(value).strip().lower() in {"1", "true", "yes", "on"}  # type: ignore[return-value]
    try:
        return type(default)(value)  # type: ignore[call-arg]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameter value {value!r} cannot be read as {type(default).__name__}") from exc


def get_param(name: str, default: T) -> T:
    """A notebook parameter, cast to the type of ``default``.

    Databricks: a text widget (job parameters fill widgets). Locally: ``MLOPS_<NAME>`` if set,
    else ``default`` (pass the value papermill injected into the ``parameters`` cell).
    """
    if is_databricks():
        dbutils = _dbutils()
        dbutils.widgets.text(name, str(default))
        raw: Any = dbutils.widgets.get(name)
        return _cast(raw, default) if raw != "" else default
    raw = os.environ.get(f"MLOPS_{name.upper()}")
    return default if raw is None else _cast(raw, default)


class MissingSecret(KeyError):
    """A secret the code needs is not configured; the message says where to put it."""


def get_secret(key: str, scope: str | None = None) -> str:
    """A secret (webhook URL, token): a Databricks secret scope on Databricks, ``MLOPS_<KEY>`` locally.

    Secrets never live in code, config files or notebooks; a missing one raises ``MissingSecret``
    naming the environment variable or the scope to fill.
    """
    if is_databricks():
        from utils.config import get_config

        scope = scope or get_config().project
        try:
            return str(_dbutils().secrets.get(scope=scope, key=key))
        except Exception as exc:  # noqa: BLE001 - the SDK raises several types for a missing secret
            raise MissingSecret(f"no secret {key!r} in scope {scope!r}: "
                                f"databricks secrets put-secret {scope} {key}") from exc
    name = f"MLOPS_{key.upper()}"
    value = os.environ.get(name, "")
    if not value:
        raise MissingSecret(f"secret {key!r} is not set: export {name}=... (never commit it)")
    return value


# ---------------------------------------------------------------- Java and Spark


JAVA_HINT = (
    f"install a JDK {MIN_JAVA}+ (e.g. `apt-get install openjdk-17-jdk-headless`, "
    "`brew install openjdk@17`) or `conda env create -f environment.yml`"
)


def _java_major(java: str) -> int:
    """Major version of the ``java`` executable at ``java``; raises a one-line fix if unreadable or too old."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    text = out.stderr + out.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise EnvironmentProblem(f"cannot read the Java version from {text.strip()!r} ({java}): {JAVA_HINT}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise EnvironmentProblem(f"Java {major} is too old ({java}), Spark 4 needs Java {MIN_JAVA}+: {JAVA_HINT}")
    return major


def java_version() -> int:
    """Major version of the ``java`` on ``JAVA_HOME`` or ``PATH``; raises a one-line fix if absent.

    Spark starts ``$JAVA_HOME/bin/java`` whenever ``JAVA_HOME`` is set, so a ``JAVA_HOME`` naming a folder
    without ``bin/java`` (left over from an old JDK) would stop it even with a good Java on ``PATH``: then
    that Java is used (``JAVA_HOME`` is pointed at it for this process) and a warning says how to fix it.
    """
    java_home = os.environ.get("JAVA_HOME")
    on_path = shutil.which("java")
    if java_home and not (Path(java_home) / "bin" / "java").is_file():
        if not on_path:
            raise EnvironmentProblem(
                f"Java not found: JAVA_HOME={java_home} has no bin/java (a JDK removed or moved?) and there is "
                f"no java on PATH; {JAVA_HINT}, then set JAVA_HOME to its folder or `unset JAVA_HOME`"
            )
        major = _java_major(on_path)
        home = Path(on_path).resolve().parents[1]
        warnings.warn(
            f"JAVA_HOME={java_home} has no bin/java; using the Java {major} on PATH ({home}) instead. "
            f"To fix it for good: `export JAVA_HOME={home}` or `unset JAVA_HOME`.",
            stacklevel=2,
        )
        os.environ["JAVA_HOME"] = str(home)
        return major
    java = str(Path(java_home) / "bin" / "java") if java_home else on_path
    if not java:
        raise EnvironmentProblem(f"Java not found (no JAVA_HOME, no java on PATH): {JAVA_HINT}")
    return _java_major(java)


def _prepare_local_spark_env() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("SPARK_CONF_DIR", str(REPO_ROOT / "conf" / "spark"))
    # Executables the workers and `mlflow models serve` start by name live next to the interpreter.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def get_spark(app_name: str = "plantly-mlops") -> Any:
    """The Spark session: the cluster's on Databricks; locally ``local[*]`` or ``SPARK_MASTER``."""
    from pyspark.sql import SparkSession

    if is_databricks():
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession() or _default_session()  # a new thread has no active session
    if active is not None:
        if _same_path(active.conf.get("spark.sql.warehouse.dir"), lakehouse_dir()):
            return active
        active.stop()  # MLOPS_STATE_DIR moved: a session serves one warehouse (about a second to restart)
    java_version()
    from utils.local import catalog as local_catalog
    from utils.local import jvm

    try:
        delta_conf = jvm.spark_conf(catalogs=[_configured_catalog()])
    except jvm.MissingJars as exc:
        raise EnvironmentProblem(str(exc)) from None
    _prepare_local_spark_env()
    ensure_dirs()
    tmp = tmp_dir()
    master = os.environ.get("SPARK_MASTER", "local[*]")
    java_opts = f"-Djava.io.tmpdir={tmp} -Dlog4j2.configurationFile={REPO_ROOT / 'conf' / 'spark' / 'log4j2.properties'}"
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", os.environ.get("MLOPS_SHUFFLE_PARTITIONS", "4"))
        .config("spark.default.parallelism", os.environ.get("MLOPS_SHUFFLE_PARTITIONS", "4"))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "true")
        .config("spark.local.dir", str(tmp))
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.memory", os.environ.get("MLOPS_DRIVER_MEMORY", "4g"))
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.warehouse.dir", str(lakehouse_dir()))
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.pyspark.python", sys.executable)
    )
    for key, value in delta_conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    local_catalog.register_tables(spark, lakehouse_dir())
    return spark


def _default_session() -> Any:
    """The session the builder made in this process, if it still runs (any thread), else None."""
    from pyspark.sql import SparkSession

    session = SparkSession._instantiatedSession
    return session if session is not None and session._sc._jsc is not None else None


def _same_path(uri: str | None, path: Path) -> bool:
    from urllib.parse import unquote, urlparse

    if not uri:
        return False
    return Path(unquote(urlparse(uri).path) if uri.startswith("file:") else uri).resolve() == path.resolve()


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
    """Stop the local Spark session if one is running (never on Databricks)."""
    if is_databricks():
        return
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


# ---------------------------------------------------------------- MLflow


def tracking_uri() -> str:
    """MLflow tracking URI: ``databricks``, ``MLFLOW_TRACKING_URI``, or local SQLite."""
    if is_databricks():
        return "databricks"
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def registry_uri() -> str:
    """MLflow model registry URI: Unity Catalog on Databricks, else the tracking store."""
    if is_databricks():
        return "databricks-uc"
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri()


def artifact_root() -> str:
    """Default artifact location for locally created experiments."""
    return (mlflow_dir() / "artifacts").as_uri()


def configure_mlflow(experiment_name: str | None = None) -> str:
    """Point MLflow at this platform's tracking server and registry; returns the experiment id."""
    import logging

    import mlflow

    from utils.config import get_config

    ensure_dirs()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(registry_uri())
    name = experiment_name or get_config().experiment_name
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        exp_id = mlflow.create_experiment(name, artifact_location=None if is_databricks() else artifact_root())
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def environment_report() -> dict[str, str]:
    """Versions of the pieces the workshop relies on, for the setup notebook."""
    import importlib.metadata as md
    import platform as pyplatform

    report = {"python": pyplatform.python_version(), "platform": "databricks" if is_databricks() else "local"}
    for pkg in ("pyspark", "delta-spark", "mlflow", "scikit-learn", "pandas", "pyarrow",
                "shap", "fairlearn", "databricks-feature-engineering", "databricks-sdk"):
        try:
            report[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            report[pkg] = "not installed"
    if not is_databricks():
        report["java"] = str(java_version())
    return report
