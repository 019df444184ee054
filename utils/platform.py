"""The only module that knows where the code runs: Databricks or the local embedded default.

Notebooks never branch on the platform; they call these functions.
Nothing happens at import time: Spark, MLflow and directories are set up by explicit calls.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from utils.parameters import cast_param

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

    Databricks: ``%pip install -r requirements-databricks.txt`` (only what the runtime lacks or must pin,
    never pyspark, delta-spark or Jupyter, so the runtime's own Spark stays) and ``%pip install --no-deps -e``
    of the repository (so ``utils`` imports after the restart wherever the files were deployed), through
    IPython's ``run_line_magic`` (the call a ``%pip`` line stands for), then ``dbutils.library.restartPython()``. Locally: nothing, since ``make install`` built the environment
    the kernel runs in; returns a sentence saying so. Each notebook's first code cell calls it, so
    "Run All" works in a plain Jupyter kernel and on Databricks alike.
    """
    if not is_databricks():
        return "Nothing to install locally: the kernel runs in the environment `make install` built."
    from IPython import get_ipython

    shell = get_ipython()
    shell.run_line_magic("pip", f"install --quiet -r {REPO_ROOT / 'requirements-databricks.txt'}")
    shell.run_line_magic("pip", f"install --quiet --no-deps -e {REPO_ROOT}")
    _dbutils().library.restartPython()
    return "Installed; Python restarted."


# ---------------------------------------------------------------- local paths


def state_dir() -> Path:
    """Root of all local state (tables, MLflow, tmp); ``MLOPS_STATE_DIR`` moves it.

    Locally ``.lakehouse`` in the repository. On Databricks the repository is a Git folder under
    ``/Workspace``, which cannot hold symlinks (a virtualenv) and caps files written from a cluster at
    256 MB, so scratch state goes to the driver's local disk (``/local_disk0/tmp`` where it exists,
    else the temp folder); durable files go to Unity Catalog volumes (:func:`files_dir`).
    """
    if os.environ.get("MLOPS_STATE_DIR"):
        return Path(os.environ["MLOPS_STATE_DIR"]).resolve()
    if is_databricks():
        import tempfile

        local_disk = Path("/local_disk0/tmp")
        return (local_disk if local_disk.is_dir() else Path(tempfile.gettempdir())) / "plantly-mlops"
    return (REPO_ROOT / ".lakehouse").resolve()


def files_dir(name: str) -> Path:
    """A folder for files both Python and Spark read and write (landing zones, streaming checkpoints).

    Databricks: the Unity Catalog volume ``/Volumes/<catalog>/<schema>/<name>`` (a bare path there
    means DBFS to Spark, so workspace or driver folders would not be seen by the executors).
    Locally: ``state_dir()/<name>``. :func:`ensure_dirs` creates it on both.
    """
    if is_databricks():
        from utils.config import get_config

        cfg = get_config()
        return Path(f"/Volumes/{cfg.catalog}/{cfg.schema}/{name}")
    return state_dir() / name


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
        return files_dir("raw")
    if os.environ.get("MLOPS_RAW_DIR"):
        return Path(os.environ["MLOPS_RAW_DIR"]).resolve()
    return state_dir() / "raw" if os.environ.get("MLOPS_STATE_DIR") else (REPO_ROOT / "data" / "raw").resolve()


def tmp_dir() -> Path:
    """Scratch space for the JVM and Spark, inside the project instead of ``/tmp``."""
    return state_dir() / "tmp"


VOLUMES = ("raw", "landing", "checkpoints")
"""The Unity Catalog volumes the lifecycle writes files to (``files_dir``); the bundle declares the same."""
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

    Promotion copies a model version into another catalog (``plantly_prod``) whose schema nothing else
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


# ---------------------------------------------------------------- parameters


def get_param(name: str, value: Any, declared: type[T]) -> T:
    """A notebook parameter as the type its ``parameters`` cell declares, whatever source supplies it.

    ``value`` is the variable as the parameters cell left it: the cell's own default, or what papermill
    injected after it (``-p``/``-r``, ``utils.runner``). ``declared`` is the type of the cell's default
    (``rows = 20000`` declares int). Sources, first that is set wins: on Databricks the widget ``name``
    (job parameters fill widgets); locally the environment variable ``MLOPS_<NAME>``; then ``value``.
    Whatever the source, the value is cast to ``declared``; one that does not parse raises
    ``ParameterError`` (one line) naming the parameter, the value, the source and a valid example.
    Locally, any ``MLOPS_*`` variable the project does not read gets a one-line warning on stderr
    (``utils.config.warn_unknown_variables``).
    """
    from utils.config import warn_unknown_variables
    from utils.parameters import as_text, example_of

    example = as_text(example_of(declared, value))
    if is_databricks():
        dbutils = _dbutils()
        _config_from_job_parameters(dbutils)
        dbutils.widgets.text(name, "" if value is None else str(value))
        raw: Any = dbutils.widgets.get(name)
        if raw != "":
            return cast_param(name, raw, declared, f"the widget / job parameter {name!r}",
                              example=f"the widget / job parameter {name} set to {example}")
    else:
        env = f"MLOPS_{name.upper()}"
        warn_unknown_variables(also_known=[env])
        raw = os.environ.get(env)
        if raw is not None:
            return cast_param(name, raw, declared, f"the environment variable {env}", example=f"{env}={example}")
    return cast_param(name, value, declared, "the notebook's parameters cell (its default, or what papermill injected)",
                      example=f"{name} = {example_of(declared)!r}")


_JOB_CONFIG_READ = False


def _config_from_job_parameters(dbutils: Any) -> None:
    """Copy job parameters named after config fields (``catalog``, ``schema``, ``endpoint``, ...) to ``MLOPS_<FIELD>``.

    Serverless jobs have no cluster environment variables, so the bundle passes the config as job
    parameters, which reach a notebook as widgets; ``get_config`` then reads them as it reads any
    ``MLOPS_<FIELD>``. Runs once per process, at the first ``get_param``; a widget that does not exist
    (an interactive notebook) is skipped, and a variable already set wins.
    """
    global _JOB_CONFIG_READ
    if _JOB_CONFIG_READ:
        return
    from dataclasses import fields

    from utils.config import Config

    for f in fields(Config):
        if f.name == "thresholds" or os.environ.get(f"MLOPS_{f.name.upper()}"):
            continue
        try:
            raw = dbutils.widgets.get(f.name)
        except Exception:  # noqa: BLE001, S112 - dbutils raises a Py4J/Connect error for a widget that does not exist
            continue
        if raw not in (None, ""):
            os.environ[f"MLOPS_{f.name.upper()}"] = str(raw)
    if not os.environ.get("MLOPS_SCHEMA"):
        schema = personal_schema(Config.schema)
        if schema:
            os.environ["MLOPS_SCHEMA"] = schema
            print(f"schema {schema}: your own (no schema parameter was given), so attendees of one workshop do not "
                  "share tables, models, endpoint and online store; set the widget or job parameter schema to choose one")
    _JOB_CONFIG_READ = True


def personal_schema(base: str, user: str | None = None) -> str:
    """``<base>_<user>``: the schema a notebook run by hand on Databricks uses when no ``schema`` is given.

    ``user`` defaults to :func:`current_user`; its part before ``@``, lower case, with every character
    that is not a letter, digit or ``_`` turned into ``_`` (``ada.lovelace@example.com`` gives
    ``mlops_ada_lovelace``; a name with no ASCII letter or digit gets ``u`` and 8 hex digits of its SHA-1),
    so the three-level names stay valid (``utils.parameters.PATTERNS``). Returns
    ``""`` when the user cannot be told (off Databricks, or the workspace does not answer), and the
    caller keeps the shared default.
    """
    if user is None:
        try:
            user = current_user()
        except Exception:  # noqa: BLE001 - no workspace client here: keep the shared default schema
            return ""
    if not user:
        return ""
    local = re.sub(r"[^a-z0-9_]+", "_", user.split("@")[0].lower()).strip("_")
    if not local:  # a name with no ASCII letter or digit: a short hash of it keeps users apart
        import hashlib

        local = "u" + hashlib.sha1(user.encode()).hexdigest()[:8]  # noqa: S324 - a name, not a secret
    return f"{base}_{local}"[:255]


class MissingSecret(KeyError):
    """A secret the code needs is not configured; the message says where to put it."""


def get_secret(key: str, scope: str | None = None) -> str:
    """A secret (webhook URL, token): a Databricks secret scope on Databricks, ``MLOPS_<KEY>`` locally.

    Secrets never live in code, config files or notebooks; a missing one raises ``MissingSecret``
    naming the environment variable or the scope to fill (and the command creating the scope, when
    ``dbutils.secrets.listScopes()`` shows the scope itself is missing).
    """
    if is_databricks():
        from utils.config import get_config

        scope = scope or get_config().project
        dbutils = _dbutils()
        try:
            return str(dbutils.secrets.get(scope=scope, key=key))
        except Exception as exc:
            try:
                scopes = {getattr(s, "name", s) for s in dbutils.secrets.listScopes()}
            except Exception:  # listing scopes may be refused too; then name the key only
                scopes = {scope}
            if scope not in scopes:
                raise MissingSecret(f"no secret scope {scope!r}: databricks secrets create-scope {scope}, then "
                                    f"databricks secrets put-secret {scope} {key}") from exc
            raise MissingSecret(f"no secret {key!r} in scope {scope!r}: "
                                f"databricks secrets put-secret {scope} {key}") from exc
    name = f"MLOPS_{key.upper()}"
    value = os.environ.get(name, "")
    if not value:
        raise MissingSecret(f"secret {key!r} is not set: export {name}=... (never commit it)")
    return value


class _NoInbox:
    """No webhook inbox: what :func:`alert_inbox` gives on Databricks (``url`` None, no messages)."""

    url: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        return []

    def __enter__(self) -> _NoInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def alert_inbox() -> Any:
    """A context manager giving a webhook receiver to show alerts arriving, where there can be one.

    Locally: ``utils.local.webhook_inbox.LocalWebhookInbox`` on 127.0.0.1 (a stand-in for Slack, started on
    ``with`` and stopped after; ``url`` and ``messages()``). On Databricks: an inbox with ``url`` None and
    no messages, since a server on the driver is no stand-in for a chat tool there; alerts reach people
    through the webhook in the secret ``alert_webhook_url`` (``utils.alerts.alert_notifiers``).
    """
    if is_databricks():
        return _NoInbox()
    from utils.local.webhook_inbox import LocalWebhookInbox

    return LocalWebhookInbox()


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


_SESSION: dict[str, Any] = {}
"""This process's session on the local engine, by state folder (a session serves one warehouse)."""


def get_spark(app_name: str = "plantly-mlops") -> Any:
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
    builder = SparkSession.builder.master(master).appName("plantly-cluster")
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


# ---------------------------------------------------------------- services: Databricks' own, or their local stand-ins
# The one place that picks an implementation by platform. The implementations are imported inside the
# functions (this module is the composition root: they may import its paths; it imports them only when called).


def platform_name() -> str:
    """``"Databricks"`` or ``"local"``: where this code runs, for people to read (pages, reports)."""
    return "Databricks" if is_databricks() else "local"


def workspace_client() -> Any:
    """``databricks.sdk.WorkspaceClient()``, authenticated by the Databricks runtime.

    Raises:
        EnvironmentProblem: off Databricks, where there is no workspace to talk to (callers that can
            do without one, such as the status page, catch it).
    """
    if not is_databricks():
        raise EnvironmentProblem("no Databricks workspace: this runs outside a Databricks runtime")
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient()


def feature_client() -> Any:
    """The Feature Engineering client: Databricks' ``FeatureEngineeringClient`` there, its local twin elsewhere.

    The twin, ``utils.local.feature_store.LocalFeatureEngineeringClient``, has the real client's methods
    and keyword arguments and returns the real package's entities, so notebook code is the same.
    """
    if is_databricks():
        from databricks.feature_engineering import FeatureEngineeringClient

        return FeatureEngineeringClient()
    from utils.local.feature_store import LocalFeatureEngineeringClient

    return LocalFeatureEngineeringClient()


def lakebase_enabled() -> bool:
    """True when ``MLOPS_LAKEBASE`` is set to true (``1``, ``true``, ``yes``, ``on``): publish to a Lakebase online store."""
    return os.environ.get("MLOPS_LAKEBASE", "").strip().lower() in {"1", "true", "yes", "on"}


def automatic_feature_lookup() -> bool:
    """True when models are logged with their feature lookups (``fe.log_model``) to be served with automatic lookup.

    Locally always: the local endpoint reads the SQLite online store that every ``publish_online`` fills.
    On Databricks only with ``MLOPS_LAKEBASE=true``: Model Serving looks features up in a Databricks
    Online Feature Store (Lakebase), which ``publish_online`` fills only then
    (https://docs.databricks.com/aws/en/machine-learning/feature-store/automatic-feature-lookup: publish
    before deploying). Without one, the model is logged plain and the router sends it full feature rows.
    """
    return True if not is_databricks() else lakebase_enabled()


def online_store_spec(name: str | None = None, timeout_s: float = 900.0) -> Any:
    """The online store ``publish_table`` writes to: a Lakebase online store on Databricks, SQLite locally.

    Databricks: ``utils.features.lakebase_online_store(name, timeout_s)`` (got or created, then waited
    for until available). Locally: ``utils.local.online_store.SqliteOnlineStore()``.
    """
    if is_databricks():
        from utils.features import lakebase_online_store

        return lakebase_online_store(name, timeout_s)
    from utils.local.online_store import SqliteOnlineStore

    return SqliteOnlineStore()


def online_table_name(table: str) -> str:
    """The name of ``table``'s online table in the store :func:`online_store_spec` gives.

    Locally the SQLite store names it after the feature table. On Databricks, ``<table>_online``: a
    Lakebase online table is a Unity Catalog table of its own (a synced table), so it cannot take the
    offline Delta table's name.
    """
    return f"{table}_online" if is_databricks() else table


def delete_online_store(name: str | None = None) -> bool:
    """Delete the Lakebase online store ``name`` so it stops billing; False if there is none.

    ``name`` defaults to ``get_config().online_store_name``, the store of this catalog and schema, so
    one attendee's clean-up never deletes another's store. Locally there is nothing to delete (the
    SQLite store is part of the state folder): returns False. On Databricks without ``MLOPS_LAKEBASE=true``
    nothing was published to a store, so the Lakebase API is not called (it may not be enabled there):
    one line says so and it returns False; a refusal of the API (``DatabricksError``: Lakebase not enabled,
    permission denied) is one line too, never a traceback at the end of notebook 06.
    """
    if not is_databricks():
        return False
    if not lakebase_enabled():
        print("no Lakebase online store to delete: MLOPS_LAKEBASE is not true, so nothing was published to one "
              "(a store made in another session: delete it in Compute → Lakebase)")
        return False
    from databricks.sdk.errors import DatabricksError

    from utils.config import get_config

    client = feature_client()
    store_name = name or get_config().online_store_name
    try:
        if client.get_online_store(name=store_name) is None:
            return False
        client.delete_online_store(name=store_name)
    except DatabricksError as exc:  # Lakebase not enabled or not in this region, permission denied, ...
        reason = (str(exc).split(". Config: ")[0].strip().splitlines() or [type(exc).__name__])[0]
        print(f"Lakebase online store {store_name!r} not deleted ({getattr(exc, 'error_code', '') or type(exc).__name__}: "
              f"{reason[:200]}); if it exists, delete it in Compute → Lakebase")
        return False
    return True


def record_lineage(name: str, sources: Mapping[str, int | None] | Sequence[str], version: int | None = None) -> None:
    """Record that feature table ``name`` (at ``version``, default its latest) was built from ``sources``.

    ``sources`` maps source table to the Delta version read (a list of names means their current
    versions). A no-op on Databricks, where Unity Catalog captures lineage itself from the queries that
    run (see :func:`feature_lineage`); locally the twin's registry keeps it
    (``utils.local.feature_store.record_lineage``).
    """
    if is_databricks():
        return
    from utils.local import feature_store

    feature_store.record_lineage(name, sources, version)


LINEAGE_QUERY = """
SELECT DISTINCT target_table_full_name AS feature_table, source_table_full_name AS source_table, source_type,
       entity_type, entity_id, entity_run_id, created_by, event_time
FROM system.access.table_lineage
WHERE target_table_full_name = :table AND source_table_full_name IS NOT NULL AND source_table_full_name <> :table
ORDER BY event_time, source_table, entity_run_id
""".strip()
"""Unity Catalog's lineage of one table: its writes' sources, oldest first (named parameter ``:table``)."""

LINEAGE_COLUMNS = ["feature_table", "source_table", "source_type", "entity_type", "entity_id", "entity_run_id",
                   "created_by", "event_time"]
"""The columns :func:`feature_lineage` returns on Databricks."""


def lineage_is_immediate() -> bool:
    """True where :func:`feature_lineage` shows a write as soon as it is made: locally, where lineage is
    recorded with the write. False on Databricks, where Unity Catalog's lineage system table fills
    after the write (minutes later), so a check right after a write cannot require it yet.
    """
    return not is_databricks()


def feature_lineage(name: str) -> Any:
    """The sources of feature table ``name`` as a pandas DataFrame, one row per source table and write.

    Locally (``utils.local.feature_store.feature_lineage``): ``feature_table``, ``feature_table_version``,
    ``mode``, ``source_table``, ``source_version``, ``written_at``, one row per version written and source,
    recorded with the write.

    Databricks: Unity Catalog's table lineage system table, ``system.access.table_lineage``, read with
    :data:`LINEAGE_QUERY` (named parameter markers, no string formatting): ``feature_table``
    (``target_table_full_name``), ``source_table`` (``source_table_full_name``), ``source_type``
    (TABLE, VIEW, PATH, STREAMING_TABLE), ``entity_type``/``entity_id``/``entity_run_id`` (the notebook,
    job or pipeline and its run), ``created_by`` and ``event_time``, oldest first; a table reading itself
    (a MERGE reads its target) and path reads without a table name are left out. Unity Catalog feature
    tables leave the client's ``table_data_sources`` empty, so the system table is where the lineage
    is. Sources: the lineage system tables reference (https://docs.databricks.com/aws/en/admin/system-tables/lineage),
    which says records are emitted only when lineage can be inferred and that the ``system.access``
    schema must be enabled; "View data lineage using Unity Catalog"
    (https://docs.databricks.com/aws/en/data-governance/unity-catalog/data-lineage) says Catalog
    Explorer shows lineage "in near real time". Neither page promises a latency for the system table,
    which is a Databricks-hosted analytical store filled after the fact: expect a write's rows minutes
    later, not at once (:func:`lineage_is_immediate` is False there). An empty result prints a one-line
    note saying so; a system table this user cannot read (schema not enabled, no ``SELECT``) prints one
    line naming the fix and returns the empty frame, never a traceback.
    """
    if not is_databricks():
        from utils.local import feature_store

        return feature_store.feature_lineage(name)
    import pandas as pd

    try:
        rows = get_spark().sql(LINEAGE_QUERY, args={"table": name.lower()}).collect()
    except Exception as exc:  # Spark Connect and classic Spark raise different types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"lineage of {name} unavailable: cannot read system.access.table_lineage ({first}); ask a workspace "
              "admin to enable the system.access schema and GRANT SELECT on it, or see Catalog Explorer > Lineage")
        return pd.DataFrame(columns=LINEAGE_COLUMNS)
    frame = pd.DataFrame([r.asDict() for r in rows], columns=LINEAGE_COLUMNS)
    if frame.empty:
        print(f"no lineage rows yet for {name}: Unity Catalog fills system.access.table_lineage minutes after "
              "a write; rerun later, or open the table's Lineage tab in Catalog Explorer")
    return frame


INFERENCE_TABLE_PREFIX = "endpoint"
"""Model Serving endpoints write their AI Gateway inference table to ``<catalog>.<schema>.endpoint_payload``."""


def serving_backend(model_name: str, endpoint_name: str, timeout_s: float = 300.0) -> Any:
    """What a router scores with: Model Serving on Databricks, models loaded in the router's process elsewhere.

    Returns ``utils.serving.ModelServingBackend`` (served entities of endpoint ``endpoint_name``, with the AI
    Gateway inference table ``<catalog>.<schema>.endpoint_payload``) or
    ``utils.local.endpoints.LocalBackend`` (one in-memory served model per version, loaded once).
    """
    if is_databricks():
        from utils.config import get_config
        from utils.serving import ModelServingBackend

        cfg = get_config()
        return ModelServingBackend(endpoint_name, model_name,
                                   inference_table=(cfg.catalog, cfg.schema, INFERENCE_TABLE_PREFIX))
    from utils.local.endpoints import LocalBackend

    return LocalBackend(model_name, timeout_s)


def deployment_trigger(model_name: str, deployment_job_id: str = "") -> Any:
    """What makes registering a version run the deployment job's gate; a context manager around registration.

    Use as ``with deployment_trigger(name, job_id) as trigger: mv = registry.register(...);
    verdict = trigger.verdict(mv.version)``. Each trigger has ``how`` (one line to show), ``verdict(version)``
    (a ``utils.gate.GateResult``, waiting for it) and ``events()`` (what it saw judged, as pandas).

    - Databricks with ``deployment_job_id``: ``utils.deployment_job.JobTrigger`` links the MLflow 3
      deployment job to the model; Unity Catalog runs it on every new version.
    - Databricks without one (a notebook run by hand): ``utils.deployment_job.InlineTrigger`` runs the
      evaluation task in the notebook after registration.
    - Locally: ``utils.local.deployment_webhooks.WebhookTrigger``, the open-source MLflow server firing a
      ``model_version.created`` webhook at a receiver that runs the same evaluation task.
    """
    if is_databricks():
        from utils.deployment_job import InlineTrigger, JobTrigger

        return JobTrigger(model_name, deployment_job_id) if deployment_job_id else InlineTrigger(model_name)
    from utils.local.deployment_webhooks import WebhookTrigger

    return WebhookTrigger(model_name)


def data_profiling(cfg: Any = None, baseline_end: Any = None) -> dict[str, Any]:
    """Where the inference log's profile and drift metrics come from on this platform (notebook 06).

    Databricks: ``utils.data_profiling.ensure_monitor`` creates (or refreshes) a data-profiling monitor on
    ``inference_log``, writing its baseline table first when ``baseline_end`` is given; returns what it did.
    Locally no service profiles tables: returns where ``utils.monitoring`` wrote the metrics it computed
    (``monitored_predictions_profile_metrics`` / ``_drift_metrics``, the monitor's shape), ``action`` "local".
    """
    from utils.config import get_config
    from utils.retraining import monitoring_tables

    cfg = cfg or get_config()
    if is_databricks():
        from utils.data_profiling import ensure_monitor

        return ensure_monitor(workspace_client(), cfg, baseline_end, get_spark() if baseline_end is not None else None)
    names = monitoring_tables(cfg)
    return {"table": names["scored"], "action": "local", "profile_metrics": names["profile"],
            "drift_metrics": names["drift"], "assets_dir": None}


def code_first_runner() -> str:
    """Where code-first retraining runs (``utils.packaging.retrain_with_wheel``): ``"job"`` or ``"subprocess"``.

    Databricks: ``"job"``, a one-time job run of the wheel (``utils.packaging.retrain_in_job``), because a
    child process of the notebook has neither its credentials nor its Spark session. Elsewhere:
    ``"subprocess"``, an isolated local process that imports only the unpacked wheel.
    """
    return "job" if is_databricks() else "subprocess"


def current_user() -> str:
    """The Databricks user (or service principal) running this code; ``""`` off Databricks.

    Databricks: ``WorkspaceClient().current_user.me().user_name``, authenticated by the runtime (the
    login name there is ``root`` or a service account, never the person).
    """
    if not is_databricks():
        return ""
    return str(workspace_client().current_user.me().user_name or "")


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

    Installed distributions (``importlib.metadata``), plus what is imported and running: the pyspark
    module's version and, on Databricks, the runtime version (its Spark, not a pip wheel, is the one
    that runs there).
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
