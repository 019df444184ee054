"""Where notebook 04 promotes the champion (model-first), per bundle target, on Databricks and locally (review R4).

On Databricks the prod catalog is the lifecycle job's parameter ``prod_catalog`` (the bundle variable each target
sets), read as a widget; it must exist (``catalogs.get``, answered by the workspace stand-in) and differ from the
catalog the notebook runs in. Where there is none (dev, serverless and Free Edition, the prod target itself), 04
skips model-first with one line instead of stopping or copying the champion onto itself.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.code.test_bundle import (
    CLASSIC_TARGETS,
    SERVERLESS_TARGETS,
    _resolve,
    _target,
)
from tests.code.test_databricks_paths import _Widgets
from tests.code.test_workspace_calls import on_databricks, running, runtime_auth  # noqa: F401 - fixtures
from tests.databricks_workspace import StandInWorkspace
from utils import packaging, platform
from utils.config import get_config
from utils.platform import environment
from utils.project import DEV_CATALOG, NAME, PROD_CATALOG

EXPECTED = {"dev": None, "serverless": None, "staging": PROD_CATALOG or None, "prod": None}
"""The catalog each target's lifecycle promotes to: a development target never writes into production."""


def _job_widgets(target: str) -> dict[str, str]:
    """The lifecycle job's parameters as target ``target`` deploys them: what its notebooks read as widgets."""
    lifecycle = _target(target)["resources"]["jobs"]["lifecycle"]
    widgets = {p["name"]: _resolve(str(p["default"]), target) for p in lifecycle["parameters"]}
    widgets["schema"] = "dev_ada_mlops"  # ${resources.schemas.mlops.name}, as the deployed schema is called
    return widgets


@pytest.mark.parametrize("target", CLASSIC_TARGETS + SERVERLESS_TARGETS)
def test_each_bundle_target_promotes_where_its_prod_catalog_says_or_says_why_not(
        target: str, runtime_auth: StandInWorkspace, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("MLOPS_CATALOG", "MLOPS_SCHEMA", "MLOPS_PROD_CATALOG", "MLOPS_ENDPOINT", "MLOPS_EXPERIMENT_NAME"):
        monkeypatch.setenv(name, "")  # set by the job only (restored after the test)
    monkeypatch.setattr(environment, "_dbutils", lambda: SimpleNamespace(widgets=_Widgets(_job_widgets(target))))
    monkeypatch.setattr(environment, "_JOB_CONFIG_READ", False)
    runtime_auth.catalogs.update({DEV_CATALOG, f"{NAME}_staging", PROD_CATALOG or f"{NAME}_prod"})
    platform.get_param("rows", 20000, int)  # the notebook's parameters cell: job parameters become the config
    cfg = get_config()
    name = packaging.prod_model_name(cfg)
    out = capsys.readouterr().out
    if EXPECTED[target] is None:
        assert name is None
        (line,) = out.splitlines()
        assert line.startswith("model-first promotion skipped: ") and "prod_catalog" in line, line
    else:
        assert name == f"{EXPECTED[target]}.dev_ada_mlops.{NAME}_recommender" and out == ""
    assert name is None or not name.startswith(f"{cfg.catalog}."), "never onto the champion itself"


def test_on_databricks_an_unset_equal_or_missing_prod_catalog_is_skipped_in_one_line(
        runtime_auth: StandInWorkspace, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """Catalog workshop (the on_databricks fixture): no MLOPS_PROD_CATALOG, workshop itself, one that does not
    exist, one the workspace refuses, then one that exists."""
    monkeypatch.delenv("MLOPS_PROD_CATALOG", raising=False)
    for prod, expected in [("", "no prod catalog is set"), ("workshop", "the catalog this runs in"),
                           ("acme_live", "acme_live does not exist: create it in Catalog Explorer")]:
        assert packaging.prod_model_name(get_config(prod_catalog=prod)) is None
        (line,) = capsys.readouterr().out.splitlines()
        assert expected in line and "MLOPS_PROD_CATALOG" in line, line
    runtime_auth.catalogs.add("acme_live")
    runtime_auth.refuse(r"/catalogs/acme_live$", 403, "PERMISSION_DENIED", "User does not have USE CATALOG on Catalog 'acme_live'.")
    assert packaging.prod_model_name(get_config(prod_catalog="acme_live")) is None
    (line,) = capsys.readouterr().out.splitlines()
    assert "USE CATALOG" in line and "Config:" not in line and runtime_auth.token not in line
    runtime_auth.refusals.clear()
    assert packaging.prod_model_name(get_config(prod_catalog="acme_live")) == f"acme_live.ada.{NAME}_recommender"
    assert capsys.readouterr().out == ""


def test_locally_04_promotes_to_the_projects_prod_catalog_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MLOPS_PROD_CATALOG", raising=False)
    cfg = get_config()
    assert packaging.prod_model_name(cfg) == f"{NAME}_prod.{cfg.schema}.{cfg.model_base_name}"
    assert packaging.prod_model_name(get_config(prod_catalog="acme_live")).startswith("acme_live.")
    assert capsys.readouterr().out == ""
    assert packaging.prod_model_name(get_config(catalog=f"{NAME}_prod")) is None, "not onto itself, locally either"
    assert "the catalog this runs in" in capsys.readouterr().out
