"""One config object holding every name and threshold: rename the project in one place.

Every field can be overridden by an environment variable ``MLOPS_<FIELD>`` (upper case),
e.g. ``MLOPS_CATALOG=acme`` renames every table the notebooks create.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace


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

    project: str = "plantly"
    catalog: str = "plantly"
    schema: str = "mlops"
    model_base_name: str = "plantly_recommender"
    experiment_name: str = "plantly_recommender"  # on Databricks under /Users/<you>/ (platform.experiment_path)
    endpoint: str = ""  # "" = per catalog and schema (see endpoint_name); MLOPS_ENDPOINT sets one
    prod_catalog: str = ""  # "" = <project>_prod; the catalog notebook 04 promotes to (MLOPS_PROD_CATALOG)
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
        workshop) get an endpoint of their own, e.g. ``plantly-recommender-plantly-mlops``.
        Model Serving names allow letters, digits, ``-`` and ``_``, at most 63 characters; Kubernetes
        names do not allow ``_``, so ``-`` is used.
        """
        if self.endpoint:
            return self.endpoint
        return f"{self.model_base_name}-{self.catalog}-{self.schema}".replace("_", "-").lower()[:63].strip("-")

    def catalog_for(self, env: str) -> str:
        """The catalog of deployment environment ``env``: ``prod_catalog`` for prod if set, else ``<project>_<env>``."""
        if env == "prod" and self.prod_catalog:
            return self.prod_catalog
        return f"{self.project}_{env}"

    @property
    def model_name(self) -> str:
        """Registered model name (three-level, as Unity Catalog requires)."""
        return f"{self.catalog}.{self.schema}.{self.model_base_name}"


def _cast(value: str, like: object, variable: str = "") -> object:
    """``value`` (an environment variable's text) as the type of the default ``like``.

    Parsed as ``utils.parameters.cast_param`` parses notebook parameters (``"7"`` -> 7, ``"0.3"`` -> 0.3,
    ``"true"``/``"no"`` -> booleans); a value that does not parse raises ``ParameterError`` naming
    the field, the value and the variable, instead of a default taking its place.
    """
    from utils.parameters import cast_param

    field_name = variable.removeprefix("MLOPS_THRESHOLD_").removeprefix("MLOPS_").lower() or "value"
    return cast_param(field_name, value, type(like), f"the environment variable {variable}" if variable else "the environment",
                      what="setting")


def get_config(**overrides: object) -> Config:
    """The config, with ``MLOPS_<FIELD>`` environment overrides, then explicit ``overrides``."""
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
