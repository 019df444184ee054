"""Where the code runs and what that place provides: the facts ``utils.platform.runtime`` builds on.

Detection (:func:`is_databricks`), the paths, notebook parameters, secrets, the Java check, the MLflow URIs,
the workspace client and the current user. No backend is picked here (``utils.platform`` picks them).
It imports only ``utils.parameters``, ``utils.project`` and ``utils.config`` (inside functions), and nothing happens
at import time. ``utils.platform.runtime`` re-exports every public name, and ``utils.platform`` re-exports those.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any, TypeVar

from utils.parameters import cast_param
from utils.project import DISTRIBUTION

def _repo_root(package_parent: Path, cwd: Path) -> Path:
    """The project's folder: the package's parent, or, where the package came from an installed wheel (a bundle
    job's library, first on ``sys.path`` after ``restartPython()``), the working folder or a parent of it holding
    ``pyproject.toml`` and ``utils/`` (a notebook runs in ``notebooks/`` of the Git folder)."""
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    return next((p for p in (cwd, *cwd.parents) if (p / "pyproject.toml").is_file() and (p / "utils").is_dir()),
                package_parent)


REPO_ROOT = _repo_root(Path(__file__).resolve().parents[2], Path.cwd())


MIN_JAVA = 17


T = TypeVar("T")


class EnvironmentProblem(RuntimeError):
    """The machine lacks something the project needs; the message says what to install."""


def is_databricks() -> bool:
    """True inside a Databricks runtime (cluster, job or serverless notebook)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def is_serverless() -> bool:
    """True on Databricks serverless (Free Edition's only compute): runtime version ``client.<n>``, as MLflow tells it."""
    return os.environ.get("DATABRICKS_RUNTIME_VERSION", "").startswith("client.")


def _dbutils() -> Any:
    from databricks.sdk.runtime import dbutils  # only importable on Databricks

    return dbutils


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
        return (local_disk if local_disk.is_dir() else Path(tempfile.gettempdir())) / DISTRIBUTION
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
    ``$MLOPS_STATE_DIR/<name>`` when a state folder is chosen, so each state keeps its own results. On
    Databricks the state folder's, never the Git folder or the bundle's files (review R19)."""
    return (state_dir() if os.environ.get("MLOPS_STATE_DIR") or is_databricks() else REPO_ROOT) / name


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


def get_param(name: str, value: Any, declared: type[T]) -> T:
    """A notebook parameter as the type its ``parameters`` cell declares, whatever source supplies it.

    ``value`` is the variable as the parameters cell left it: the cell's own default, or what papermill
    injected after it (``-p``/``-r``, ``tools.runner``). ``declared`` is the type of the cell's default
    (``rows = 20000`` declares int). Sources, first that is set wins: on Databricks the widget ``name``
    (job parameters fill widgets); locally the environment variable ``MLOPS_<NAME>``; then ``value``.
    Whatever the source, the value is cast to ``declared``; one that does not parse raises
    ``ParameterError`` (one line) naming the parameter, the value, the source and a valid example.
    Locally an ``MLOPS_*`` variable the project does not read gets a warning (``utils.config.warn_unknown_variables``).
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
    """Copy job parameters named after config fields (``catalog``, ``schema``, ``endpoint``, ...) and ``lakebase`` to ``MLOPS_<NAME>``.

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

    # the config's fields, and the Lakebase opt-in (serverless cannot set MLOPS_LAKEBASE any other way: review R17)
    for name in [*(f.name for f in fields(Config) if f.name != "thresholds"), "lakebase"]:
        if os.environ.get(f"MLOPS_{name.upper()}"):
            continue
        try:
            raw = dbutils.widgets.get(name)
        except Exception:  # noqa: BLE001, S112 - dbutils raises a Py4J/Connect error for a widget that does not exist
            continue
        if raw not in (None, ""):
            os.environ[f"MLOPS_{name.upper()}"] = str(raw)
    if not os.environ.get("MLOPS_SCHEMA"):
        schema = personal_schema(Config.schema)
        if schema:
            os.environ["MLOPS_SCHEMA"] = schema
            print(f"schema {schema}: your own (no schema parameter was given), so attendees of one workshop do not "
                  "share tables, models, endpoint and online store; set the widget or job parameter schema to choose one")
    _JOB_CONFIG_READ = True


def personal_schema(base: str, user: str | None = None) -> str:
    """``<base>_<user>``: the schema a notebook run by hand on Databricks uses when no ``schema`` is given.

    ``user`` (default :func:`current_user`) maps cleanly when its part before ``@``, lower-cased, is only letters,
    digits and inner ``_``: ``ada@example.com`` gives ``mlops_ada``. Else (or past 255 characters) runs of other
    characters become ``_`` and 8 hex digits of the full name's SHA-1 follow, so no two users share one
    (``ada.lovelace@a.com`` gives ``mlops_ada_lovelace_<hash>``, no ASCII letter or digit ``mlops_u<hash>``);
    one clean part at two domains still does: give them a ``schema``. ``""`` when the user cannot be told
    (off Databricks, or the workspace does not answer): the caller keeps the shared default.
    """
    if user is None:
        try:
            user = current_user()
        except Exception:  # noqa: BLE001 - no workspace client here: keep the shared default schema
            return ""
    if not user:
        return ""
    local = user.split("@")[0].lower()
    clean = re.sub(r"[^a-z0-9_]+", "_", local).strip("_")
    name = f"{base}_{clean}"
    if clean != local or len(name) > 255:  # sanitising lost information: a hash of the full name keeps users apart
        digest = hashlib.sha1(user.encode()).hexdigest()[:8]  # noqa: S324 - a name, not a secret
        name = f"{name[:246]}_{digest}" if clean else f"{base}_u{digest}"
    return name


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


def tracking_uri() -> str:
    """MLflow tracking URI: ``databricks``, ``MLFLOW_TRACKING_URI``, or local SQLite."""
    return "databricks" if is_databricks() else os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def registry_uri() -> str:
    """MLflow model registry URI: Unity Catalog on Databricks, else the tracking store."""
    return "databricks-uc" if is_databricks() else os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri()


def artifact_root() -> str:
    """Default artifact location for locally created experiments."""
    return (mlflow_dir() / "artifacts").as_uri()


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


def current_user() -> str:
    """The Databricks user (or service principal) running this code; ``""`` off Databricks.

    Databricks: ``WorkspaceClient().current_user.me().user_name``, authenticated by the runtime (the
    login name there is ``root`` or a service account, never the person).
    """
    if not is_databricks():
        return ""
    return str(workspace_client().current_user.me().user_name or "")


def lakebase_enabled() -> bool:
    """True when ``MLOPS_LAKEBASE`` is set to true (``1``, ``true``, ``yes``, ``on``): publish to a Lakebase online store.

    On Databricks the widget or job parameter ``lakebase`` sets it (serverless has no environment variables).
    """
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


def online_table_name(table: str) -> str:
    """The name of ``table``'s online table in the store :func:`online_store_spec` gives.

    Locally the SQLite store names it after the feature table. On Databricks, ``<table>_online``: a Lakebase
    online table is a Unity Catalog table of its own (a synced table), so it cannot take the offline table's name.
    """
    return f"{table}_online" if is_databricks() else table


def lineage_is_immediate() -> bool:
    """True where :func:`feature_lineage` shows a write as soon as it is made: locally, where lineage is
    recorded with the write. False on Databricks, where Unity Catalog's lineage system table fills
    after the write (minutes later), so a check right after a write cannot require it yet.
    """
    return not is_databricks()
