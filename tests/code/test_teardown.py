"""``python -m utils.teardown`` against the workspace stand-in, through the real ``databricks-sdk``.

The stand-in holds one of everything the project makes in a target (the endpoint, the monitor on ``inference_log``,
the Lakebase online store, the bundle's three jobs, the model with two versions, the experiment, the volumes, the
schema) plus what it must leave alone: another attendee's jobs and a job of no bundle. Listing changes nothing; ``--yes``
deletes in the safe order; a resource already gone and a refused one are one line each and the rest is still deleted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.code.test_workspace_calls import on_databricks, running, runtime_auth  # noqa: F401 - fixtures
from tests.databricks_workspace import StandInWorkspace
from utils import platform, teardown
from utils.config import Config, get_config
from utils.local.job_runner import bundle_jobs
from utils.platform import REPO_ROOT, VOLUMES, experiment_path

KIND_OF_PATH = [  # (method, path prefix) of each delete call -> the kind it deletes
    ("DELETE", "/api/2.0/serving-endpoints/", "serving endpoint"),
    ("DELETE", "/api/data-quality/v1/monitors/", "data-profiling monitor"),
    ("DELETE", "/api/2.0/feature-store/online-stores/", "online store"),
    ("POST", "/api/2.2/jobs/delete", "job"),
    ("DELETE", "/api/2.1/unity-catalog/models/", "model version"),  # .../versions/N; the model itself below
    ("POST", "/api/2.0/mlflow/experiments/delete", "experiment"),
    ("DELETE", "/api/2.1/unity-catalog/volumes/", "volume"),
    ("DELETE", "/api/2.1/unity-catalog/schemas/", "schema"),
]


def _kind(method: str, path: str) -> str:
    if method == "DELETE" and path.startswith("/api/2.1/unity-catalog/models/") and "/versions/" not in path:
        return "registered model"
    return next(kind for verb, prefix, kind in KIND_OF_PATH if verb == method and path.startswith(prefix))


def _job(spec: dict[str, Any], cfg: Config, schema: str, user: str = "ada") -> dict[str, Any]:
    """A bundle job as `bundle deploy -t dev` makes it for ``user``: named ``[dev <user>] ...``, defaults resolved."""
    resolved = {"catalog": cfg.catalog, "schema": schema}
    return {"name": f"[dev {user}] {spec['name'].replace('${bundle.target}', 'dev')}", "max_concurrent_runs": 1,
            "parameters": [{"name": p["name"], "default": resolved.get(p["name"], str(p.get("default", "")))}
                           for p in spec.get("parameters", [])], "tasks": spec["tasks"]}


@pytest.fixture
def made(runtime_auth: StandInWorkspace) -> StandInWorkspace:  # noqa: F811
    """The stand-in holding what a workshop run made in workshop.ada, and what is someone else's."""
    ws, cfg = runtime_auth, get_config()
    ws.endpoints[cfg.endpoint_name] = {
        "served_entities": [{"name": "rec-2", "entity_name": cfg.model_name, "entity_version": "2",
                             "workload_size": "Small", "scale_to_zero_enabled": False}],
        "traffic_config": {"routes": [{"served_model_name": "rec-2", "traffic_percentage": 100}]}}
    ws.schemas[f"{cfg.catalog}.{cfg.schema}"] = "schema-1"
    ws.tables[cfg.table("inference_log")] = "table-1"
    ws.monitors["table-1"] = {"object_type": "table", "object_id": "table-1",
                              "data_profiling_config": {"output_schema_id": "schema-1", "inference_log": {}}}
    ws.online_stores[cfg.online_store_name] = {"name": cfg.online_store_name, "capacity": "CU_1", "state": "AVAILABLE"}
    for i, (spec, _) in enumerate(bundle_jobs().values()):
        ws.jobs[11 + i] = _job(spec, cfg, cfg.schema)
        ws.jobs[21 + i] = _job(spec, cfg, "bob", user="bob")  # another attendee's copy: not ours
    ws.jobs[31] = {"name": "nightly-etl", "parameters": [{"name": "catalog", "default": cfg.catalog},
                                                         {"name": "schema", "default": cfg.schema}]}
    ws.registered_models[cfg.model_name] = {"name": cfg.model_name}
    ws.model_versions[cfg.model_name] = {v: ws._version(cfg.model_name, v) for v in (1, 2)}
    ws.experiments["7"] = {"experiment_id": "7", "name": experiment_path(cfg.experiment_name), "lifecycle_stage": "active"}
    for v in VOLUMES:
        ws.volumes[f"{cfg.catalog}.{cfg.schema}.{v}"] = {"full_name": f"{cfg.catalog}.{cfg.schema}.{v}", "name": v,
                                                         "catalog_name": cfg.catalog, "schema_name": cfg.schema}
    ws.calls.clear()
    return ws


def _left(ws: StandInWorkspace, cfg: Config) -> dict[str, Any]:
    """What of ours the stand-in still holds."""
    return {"endpoint": cfg.endpoint_name in ws.endpoints, "monitor": bool(ws.monitors), "store": bool(ws.online_stores),
            "jobs": sorted(j for j in ws.jobs if j < 20), "model": cfg.model_name in ws.registered_models,
            "versions": sorted(ws.model_versions.get(cfg.model_name, {})),
            "experiment": ws.experiments["7"]["lifecycle_stage"], "volumes": sorted(ws.volumes),
            "schema": f"{cfg.catalog}.{cfg.schema}" in ws.schemas}


def _deletions(ws: StandInWorkspace) -> list[str]:
    return [_kind(m, p) for m, p, _ in ws.writes()]


def test_it_lists_every_kind_with_what_bills_and_changes_nothing(made: StandInWorkspace,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_config()
    assert teardown.main([]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert set(teardown.ORDER) <= set(rows), out
    assert "always on" in rows["serving endpoint"] and cfg.endpoint_name in rows["serving endpoint"]
    assert "Lakebase capacity CU_1, every hour" in rows["online store"]
    assert "per refresh" in rows["data-profiling monitor"] and "per run: job compute" in rows["job"]
    jobs = [line for line in out.splitlines() if line.startswith("job ")]
    assert len(jobs) == 3 and all("[dev ada]" in line for line in jobs), jobs  # not bob's, not nightly-etl
    assert f"{cfg.model_name} version 1" in out and f"{cfg.model_name} version 2" in out
    assert experiment_path(cfg.experiment_name) in out and all(f"{cfg.catalog}.{cfg.schema}.{v}" in out for v in VOLUMES)
    assert "Nothing deleted" in out
    assert made.writes() == [] and not [c for c in made.calls if c[0] == "DELETE"]  # nothing was asked to change
    assert _left(made, cfg)["versions"] == [1, 2] and len(made.jobs) == 7 and made.schemas


def test_yes_deletes_everything_in_the_safe_order(made: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_config()
    assert teardown.main(["--yes"]) == 0
    out = capsys.readouterr().out.splitlines()
    kinds = _deletions(made)
    assert kinds == sorted(kinds, key=teardown.ORDER.index) and set(kinds) == set(teardown.ORDER), kinds
    assert kinds.count("job") == 3 and kinds.count("model version") == 2 and kinds.count("volume") == len(VOLUMES)
    assert ("DELETE", f"/api/2.1/unity-catalog/schemas/{cfg.catalog}.{cfg.schema}", None) in made.writes()
    assert made.schemas == {} and made.tables == {}  # the schema went last, with its tables
    deleted = [line for line in out if line.startswith("deleted: ")]
    assert len(deleted) == len(kinds) == 3 + 2 + len(VOLUMES) + 6
    assert _left(made, cfg) == {"endpoint": False, "monitor": False, "store": False, "jobs": [], "model": False,
                                "versions": [], "experiment": "deleted", "volumes": [], "schema": False}
    assert sorted(made.jobs) == [21, 22, 23, 31]  # bob's jobs and the unrelated one stay


def test_the_schema_goes_with_the_tables_still_in_it(made: StandInWorkspace) -> None:
    """The stand-in refuses a schema that holds tables unless forced, as Unity Catalog does; the teardown forces it."""
    from databricks.sdk.errors import DatabricksError

    cfg = get_config()
    client = platform.workspace_client()
    with pytest.raises(DatabricksError, match="not empty"):
        client.schemas.delete(f"{cfg.catalog}.{cfg.schema}")
    assert teardown.main(["--yes"]) == 0
    assert made.schemas == {} and made.tables == {}


@pytest.mark.parametrize("gone", ["serving endpoint", "job", "model version"])
def test_a_resource_already_gone_is_one_line_and_the_rest_is_deleted(
        gone: str, made: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_config()
    resources, problems = teardown.inventory(platform.workspace_client(), cfg)
    assert problems == [] and len(resources) == 3 + 2 + len(VOLUMES) + 6
    victim = next(r for r in resources if r.kind == gone)
    victim.delete()  # someone else deletes it between the listing and the teardown
    made.calls.clear()
    capsys.readouterr()
    assert teardown.delete_all(resources) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("already gone")] == [f"already gone: {gone} {victim.name}"]
    assert len([line for line in out if line.startswith("deleted: ")]) == len(resources) - 1 and len(out) == len(resources)
    assert _left(made, cfg)["schema"] is False and made.model_versions == {} and sorted(made.jobs) == [21, 22, 23, 31]


def test_a_refused_resource_is_one_line_the_rest_is_deleted_and_the_exit_is_non_zero(
        made: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_config()
    made.deny("DELETE", rf"/serving-endpoints/{cfg.endpoint_name}$",
              f"User does not have CAN_MANAGE permission on endpoint {cfg.endpoint_name}")
    assert teardown.main(["--yes"]) == 1
    out = capsys.readouterr().out.splitlines()
    refused = [line for line in out if line.startswith("refused")]
    assert refused == [(f"refused: serving endpoint {cfg.endpoint_name} needs CAN MANAGE on the endpoint "
                        f"(PERMISSION_DENIED: User does not have CAN_MANAGE permission on endpoint {cfg.endpoint_name})")], out
    assert made.endpoints and cfg.endpoint_name in made.endpoints  # still there, and still readable
    left = _left(made, cfg)
    assert left["endpoint"] and not any(left[k] for k in ("monitor", "store", "jobs", "model", "versions", "volumes", "schema"))
    assert left["experiment"] == "deleted"


def test_a_kind_that_cannot_be_listed_is_one_line_and_the_rest_is_listed(
        made: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    made.deny("GET", r"/api/2\.2/jobs/list", "User is not allowed to list jobs")
    assert teardown.main([]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("cannot list the jobs (PERMISSION_DENIED: User is not allowed to list jobs): "
                                   "it is left out below")
    assert "serving endpoint" in out and "schema" in out and "\njob " not in out and made.writes() == []


def test_a_preview_not_enabled_here_means_none_of_it(made: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:
    made.online_stores.clear()
    made.turn_off("lakebase", status=403)
    made.turn_off("data_profiling", status=400)
    assert teardown.main([]) == 0
    out = capsys.readouterr().out
    assert "online store" not in out and "data-profiling monitor" not in out and "serving endpoint" in out


def test_a_scale_to_zero_endpoint_is_not_said_to_be_always_on(made: StandInWorkspace,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_config()
    made.endpoints[cfg.endpoint_name]["served_entities"][0]["scale_to_zero_enabled"] = True
    teardown.main([])
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("serving endpoint")]
    assert "scales to zero when idle" in row and "always on" not in row


def test_nothing_made_says_so(runtime_auth: StandInWorkspace, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert teardown.main(["--yes"]) == 0
    assert capsys.readouterr().out.strip() == "Nothing of this project found in workshop.ada: nothing to delete."
    assert runtime_auth.writes() == []


def test_without_a_schema_it_looks_in_your_own_as_the_notebooks_by_hand_do(
        made: StandInWorkspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MLOPS_SCHEMA")
    made.schemas["workshop.mlops_ada"] = "schema-2"
    assert teardown.main([]) == 0
    out = capsys.readouterr().out
    assert "What this project made in workshop.mlops_ada:" in out and "workshop.ada" not in out, out
    assert made.writes() == []


def test_locally_it_points_at_make_clean_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABRICKS_RUNTIME_VERSION"}
    done = subprocess.run([sys.executable, "-m", "utils.teardown", "--yes"], check=False, cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Not on Databricks: the local equivalent is `make clean`, which deletes the local state folder."]
    helped = subprocess.run([sys.executable, "-m", "utils.teardown", "--help"], check=False, cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--yes" in helped.stdout and "--schema" in helped.stdout
