"""One config object holding every name and threshold: rename the project in one place.

Every field can be overridden by an environment variable ``MLOPS_<FIELD>`` (upper case),
e.g. ``MLOPS_CATALOG=acme`` renames every table the notebooks create.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import IO

from utils.project import NAME as PROJECT


@dataclass(frozen=True)
class Thresholds:
    """Drift, alert and validation-gate thresholds."""

    psi: float = 0.2
    js_distance: float = 0.1
    ks_pvalue: float = 0.01
    chi2_pvalue: float = 0.01
    prediction_psi: float = 0.2
    min_auc_drop: float = 0.05
    gate_min_auc: float = 0.65
    gate_max_dp_difference: float = 0.25
    gate_max_invasive_score: float = 0.0
    gate_max_auc_regression: float = 0.01


@dataclass(frozen=True)
class Config:
    """Every name the lifecycle creates, derived from a few roots."""

    project: str = PROJECT  # the names' root, from utils/project.py (what `copier copy` asked)
    catalog: str = PROJECT
    schema: str = "mlops"
    model_base_name: str = f"{PROJECT}_recommender"
    experiment_name: str = f"{PROJECT}_recommender"  # on Databricks under /Users/<you>/ (platform.experiment_path)
    endpoint: str = ""  # "" = per catalog and schema (see endpoint_name); MLOPS_ENDPOINT sets one
    prod_catalog: str = ""  # "" = <project>_prod; the catalog notebook 04 promotes to (MLOPS_PROD_CATALOG)
    lakebase_store: str = ""  # "" = per catalog and schema (see online_store_name); MLOPS_LAKEBASE_STORE sets one
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    seed: int = 42
    thresholds: Thresholds = field(default_factory=Thresholds)

    def table(self, name: str) -> str:
        """Three-level name ``catalog.schema.name`` of a lifecycle table."""
        return f"{self.catalog}.{self.schema}.{name}"

    @property
    def endpoint_name(self) -> str:
        """The Model Serving endpoint: ``endpoint``, else ``<model>-<catalog>-<schema>`` in endpoint spelling.

        Derived from catalog and schema so that dev, staging and prod (and each attendee's schema in a
        workshop) get an endpoint of their own, e.g. ``<project>-recommender-<project>-mlops``.
        Model Serving names allow letters, digits, ``-`` and ``_``, at most 63 characters; Kubernetes
        names do not allow ``_``, so ``-`` is used.
        """
        if self.endpoint:
            return self.endpoint
        return f"{self.model_base_name}-{self.catalog}-{self.schema}".replace("_", "-").lower()[:63].strip("-")

    @property
    def online_store_name(self) -> str:
        """The Lakebase online store (Databricks): ``lakebase_store``, else ``<project>-online-<catalog>-<schema>``.

        Derived from catalog and schema like :attr:`endpoint_name`, so every attendee of a workshop (and
        dev, staging and prod) gets a store of their own instead of sharing, and deleting, one billable
        store. Lakebase instance names are 1-63 characters of letters and hyphens
        (https://docs.databricks.com/aws/en/oltp/create/): lower case, every other character becomes
        ``-``, runs of ``-`` collapse, the name starts with a letter and never ends in ``-``. Digits are
        kept (two schemas ``ada1`` and ``ada2`` must not share a store). A name cut to 63 characters
        ends in 8 hex digits of its full spelling, so two long schemas that share a prefix stay apart.
        """
        if self.lakebase_store:
            return self.lakebase_store
        name = re.sub(r"[^a-z0-9]+", "-", f"{self.project}-online-{self.catalog}-{self.schema}".lower()).strip("-")
        name = name if name[:1].isalpha() else f"s-{name}"
        if len(name) > 63:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            name = f"{name[:54].rstrip('-')}-{digest}"
        return name

    def catalog_for(self, env: str) -> str:
        """The catalog of deployment environment ``env``: ``prod_catalog`` for prod if set, else ``<project>_<env>``."""
        if env == "prod" and self.prod_catalog:
            return self.prod_catalog
        return f"{self.project}_{env}"

    @property
    def model_name(self) -> str:
        """Registered model name (three-level, as Unity Catalog requires)."""
        return f"{self.catalog}.{self.schema}.{self.model_base_name}"


# ---------------------------------------------------------------- the MLOPS_* variables the project reads

NOTEBOOK_PARAMETERS = ("rows", "seed", "scenario", "bad_fraction", "retrain_job_id", "deployment_job_id")
"""The names the notebooks' ``parameters`` cells declare; ``get_param`` reads each from ``MLOPS_<NAME>`` locally
(``tests/code/test_config.py`` checks this list against the notebooks)."""

ENVIRONMENT_SETTINGS = {
    "MLOPS_STATE_DIR": "folder of all local state (tables, MLflow, executed notebooks, reports)",
    "MLOPS_RAW_DIR": "folder the raw files are generated into",
    "MLOPS_PROGRESS": "0 turns progress lines off",
    "MLOPS_ACTOR": "the name the audit trail records",
    "MLOPS_LAKEBASE": "true also publishes feature tables to a Lakebase online store (Databricks)",
    "MLOPS_ALERT_WEBHOOK_URL": "the secret alert_webhook_url locally: the Slack-compatible webhook alerts go to",
    "MLOPS_ONLINE_STORE": "path of the SQLite online store",
    "MLOPS_JARS_DIR": "folder of the resolved Delta Lake jars",
    "MLOPS_SHUFFLE_PARTITIONS": "Spark's shuffle partitions and default parallelism (the local engine)",
    "MLOPS_DRIVER_MEMORY": "Spark's driver memory (the local engine)",
    "MLOPS_ENGINE_PORT": "the port the local Spark engine listens on (default: a free one)",
    "MLOPS_ENGINE_START_TIMEOUT": "seconds to wait for the local Spark engine to start (default 240)",
    "MLOPS_CHROMIUM": "the browser tests/browser drives",
    "MLOPS_CLUSTER_DIR": "folder of bench/spark_cluster.py's standalone cluster",
}
"""Every other ``MLOPS_*`` variable the code reads (paths, switches, tuning), with what it does."""


def known_variables() -> list[str]:
    """Every ``MLOPS_*`` environment variable the project reads, sorted.

    The notebook parameters (``MLOPS_ROWS``), the config fields (``MLOPS_CATALOG``), the thresholds
    (``MLOPS_THRESHOLD_PSI``) and :data:`ENVIRONMENT_SETTINGS`. Secrets read with
    ``utils.platform.get_secret(key)`` (``MLOPS_<KEY>``) are the caller's and not listed.
    """
    names = {f"MLOPS_{p.upper()}" for p in NOTEBOOK_PARAMETERS}
    names |= {f"MLOPS_{f.name.upper()}" for f in fields(Config) if f.name != "thresholds"}
    names |= {f"MLOPS_THRESHOLD_{f.name.upper()}" for f in fields(Thresholds)}
    return sorted(names | set(ENVIRONMENT_SETTINGS))


def unknown_variables(environ: Mapping[str, str] | None = None, also_known: Iterable[str] = ()) -> list[str]:
    """One warning line per ``MLOPS_*`` variable in ``environ`` (default ``os.environ``) the project does not read.

    Each line names the variable and, when one is close (``difflib.get_close_matches``), the known name
    it was probably meant to be (``MLOPS_ROWS`` for a missing S). ``also_known`` adds names a caller reads
    (``get_param(name, ...)`` reads ``MLOPS_<NAME>``). Returns ``[]`` when every variable is known.
    """
    lines = []
    for name, close in _unknown(environ, also_known).items():
        hint = f"did you mean {close}?" if close else "utils.config.known_variables() lists the ones it reads"
        lines.append(f"warning: {name} is not a variable this project reads, so it has no effect; {hint}")
    return lines


def misspelled_variables(environ: Mapping[str, str] | None = None, also_known: Iterable[str] = (),
                         cutoff: float = 0.8) -> dict[str, str]:
    """The ``MLOPS_*`` variables in ``environ`` the project does not read but that are a near miss of one it does:
    variable -> the known name it was meant to be (a missing S of ``MLOPS_ROWS``, a missing H of ``MLOPS_THRESHOLD_PSI``).

    Stricter than :func:`unknown_variables`' suggestion (``difflib`` similarity of at least ``cutoff`` rather
    than 0.6), since a caller refuses these: a new variable that merely shares words with a known one is not one.
    """
    return {name: close for name, close in _unknown(environ, also_known, cutoff).items() if close}


def _unknown(environ: Mapping[str, str] | None, also_known: Iterable[str], cutoff: float = 0.6) -> dict[str, str | None]:
    """Each unknown ``MLOPS_*`` variable of ``environ`` (sorted) -> the closest known name (similarity >= ``cutoff``), or None."""
    environ = os.environ if environ is None else environ
    known = set(known_variables()) | set(also_known)
    found: dict[str, str | None] = {}
    for name in sorted(v for v in environ if v.startswith("MLOPS_") and v not in known):
        # compared without the shared prefix, which would make any two names look alike
        close = difflib.get_close_matches(name.removeprefix("MLOPS_"), [k.removeprefix("MLOPS_") for k in sorted(known)],
                                          n=1, cutoff=cutoff)
        found[name] = f"MLOPS_{close[0]}" if close else None
    return found


_WARNED: set[str] = set()


def warn_unknown_variables(environ: Mapping[str, str] | None = None, also_known: Iterable[str] = (),
                           stream: IO[str] | None = None) -> list[str]:
    """Print :func:`unknown_variables`' lines to ``stream`` (stderr), each once per process; returns the lines printed."""
    fresh = [line for line in unknown_variables(environ, also_known) if line not in _WARNED]
    for line in fresh:
        print(line, file=stream or sys.stderr)
    _WARNED.update(fresh)
    return fresh


def _cast(value: str, like: object, variable: str = "") -> object:
    """``value`` (an environment variable's text) as the type of the default ``like``.

    Parsed as ``utils.parameters.cast_param`` parses notebook parameters (``"7"`` -> 7, ``"0.3"`` -> 0.3,
    ``"true"``/``"no"`` -> booleans); a value that does not parse raises ``ParameterError`` naming
    the field, the value, the variable and the default as an example, instead of a default taking its place.
    """
    from utils.parameters import as_text, cast_param, example_of

    field_name = variable.removeprefix("MLOPS_THRESHOLD_").removeprefix("MLOPS_").lower() or "value"
    example = as_text(example_of(type(like), like))
    return cast_param(field_name, value, type(like), f"the environment variable {variable}" if variable else "the environment",
                      what="setting", example=f"{variable or field_name}={example}")


def get_config(**overrides: object) -> Config:
    """The config, with ``MLOPS_<FIELD>`` environment overrides, then explicit ``overrides``.

    Raises ``ParameterError`` (one line: field, value, variable and an example) when an override does not
    parse; warns once on stderr about any ``MLOPS_*`` variable the project does not read (a misspelling).
    """
    warn_unknown_variables()
    cfg = Config()
    env: dict[str, object] = {}
    for f in fields(Config):
        raw = os.environ.get(f"MLOPS_{f.name.upper()}")
        if raw is not None and f.name != "thresholds":
            env[f.name] = _cast(raw, getattr(cfg, f.name), f"MLOPS_{f.name.upper()}")
    th = cfg.thresholds
    th_env = {}
    for f in fields(Thresholds):
        raw = os.environ.get(f"MLOPS_THRESHOLD_{f.name.upper()}")
        if raw is not None:
            th_env[f.name] = _cast(raw, getattr(th, f.name), f"MLOPS_THRESHOLD_{f.name.upper()}")
    if th_env:
        env["thresholds"] = replace(th, **th_env)
    return replace(cfg, **{**env, **overrides})


def inference_log_table(cfg: Config | None = None) -> str:
    """Name of the inference log table."""
    return (cfg or get_config()).table("inference_log")


def monitoring_tables(cfg: Config | None = None) -> dict[str, str]:
    """Names of the monitoring tables (shaped like Lakehouse Monitoring's, see ``utils.monitoring``)."""
    cfg = cfg or get_config()
    return {
        "scored": cfg.table("monitored_predictions"),
        "profile": cfg.table("monitored_predictions_profile_metrics"),
        "drift": cfg.table("monitored_predictions_drift_metrics"),
        "quality": cfg.table("monitored_predictions_quality_metrics"),
        "alerts": cfg.table("monitoring_alerts"),
    }
