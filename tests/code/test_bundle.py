"""The Databricks Asset Bundle validates against the bundle models, offline, for every target."""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLASSIC_TARGETS = ("dev", "staging", "prod")
SERVERLESS_TARGETS = ("serverless",)
# How the Databricks CLI merges a target's resources into the bundle's: lists of these keyed mappings by key.
MERGE_KEYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key",
              "parameters": "name"}


def _main() -> dict:
    return yaml.safe_load((ROOT / "databricks.yml").read_text())


def _resources() -> dict[str, dict[str, tuple[dict, Path]]]:
    """Kind (jobs, dashboards) -> name -> (spec, the file defining it): bundle paths are relative to that file."""
    out: dict[str, dict[str, tuple[dict, Path]]] = {}
    for pattern in _main().get("include", []):
        for path in sorted(ROOT.glob(pattern)):
            for kind, specs in yaml.safe_load(path.read_text())["resources"].items():
                for name, spec in specs.items():
                    out.setdefault(kind, {})[name] = (spec, path)
    return out


def _merge(base: object, override: object, key: str | None = None) -> object:
    """``override`` merged into ``base`` as the CLI merges a target: mappings deep, keyed lists by key."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list) and key in MERGE_KEYS:
        by_key = {item[MERGE_KEYS[key]]: item for item in base}
        merged = [_merge(item, next((o for o in override if o[MERGE_KEYS[key]] == item[MERGE_KEYS[key]]), {}))
                  for item in base]
        return merged + [copy.deepcopy(o) for o in override if o[MERGE_KEYS[key]] not in by_key]
    return copy.deepcopy(override)


def _target(name: str) -> dict:
    """The bundle as deployed to target ``name``: resources, variables and workspace with its overrides."""
    main = _main()
    target = main["targets"][name]
    resources = {kind: {n: spec for n, (spec, _) in specs.items()} for kind, specs in _resources().items()}
    variables = {k: v.get("default") for k, v in main["variables"].items()}
    variables.update(target.get("variables", {}))
    return {
        "mode": target.get("mode"),
        "workspace": target.get("workspace", {}),
        "variables": variables,
        "resources": _merge(resources, target.get("resources", {})),
    }


def _resolve(value: str, target: str, user: str = "jane_doe") -> str:
    """``${var.*}``, ``${bundle.*}`` and the current user substituted as the CLI would for ``target``."""
    variables = _target(target)["variables"]
    known = {"bundle.target": target, "bundle.name": _main()["bundle"]["name"],
             "workspace.current_user.short_name": user}
    for _ in range(5):
        value = re.sub(r"\$\{var\.([a-z_]+)\}", lambda m: str(variables[m.group(1)]), value)
        value = re.sub(r"\$\{([a-z_.]+)\}", lambda m: known.get(m.group(1), m.group(0)), value)
    return value


@pytest.mark.parametrize("target", CLASSIC_TARGETS + SERVERLESS_TARGETS)
def test_every_target_parses_as_bundle_models(target: str) -> None:
    from databricks.bundles.dashboards import Dashboard
    from databricks.bundles.jobs import Job
    from databricks.bundles.schemas import Schema
    from databricks.bundles.volumes import Volume

    resources = _target(target)["resources"]
    assert {"lifecycle", "retrain"} <= set(resources["jobs"])
    for spec in resources["jobs"].values():
        job = Job.from_dict(spec)  # refuses any field the Jobs API does not have
        assert job.tasks, job.name
        for task in spec["tasks"]:
            assert ("job_cluster_key" in task) != ("environment_key" in task), (target, task["task_key"])
            assert ("notebook_task" in task) != ("python_wheel_task" in task), (target, task["task_key"])
    for spec in resources["schemas"].values():
        Schema.from_dict(spec)
    for spec in resources["volumes"].values():
        Volume.from_dict(spec)
    for spec in resources["dashboards"].values():
        Dashboard.from_dict(spec)


def test_lifecycle_job_runs_every_notebook_in_order() -> None:
    spec, defined_in = _resources()["jobs"]["lifecycle"]
    tasks = spec["tasks"]
    paths = [(defined_in.parent / t["notebook_task"]["notebook_path"]).resolve() for t in tasks]
    expected = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert paths == expected, "every notebook, in lifecycle order, by a path relative to the job's file"
    for before, after in itertools.pairwise(tasks):
        assert {"task_key": before["task_key"]} in after["depends_on"]
    for name, (job, path) in _resources()["jobs"].items():
        for task in job["tasks"]:
            if "notebook_task" in task:
                assert (path.parent / task["notebook_task"]["notebook_path"]).is_file(), (name, task["task_key"])


def test_python_tasks_are_entry_points_of_the_wheel_the_bundle_builds() -> None:
    """No script task: Databricks runs one by exec(compile(...)) with no __file__, so a script that finds itself
    fails (R1). Each Python task calls an entry point of the project's wheel, which the bundle builds."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    artifact = _main()["artifacts"]["wheel"]
    assert artifact["type"] == "whl" and artifact["path"] == "."
    python_tasks = 0
    for name, (job, _) in _resources()["jobs"].items():
        for task in job["tasks"]:
            assert "spark_python_task" not in task, (name, task["task_key"])
            if "python_wheel_task" in task:
                wheel = task["python_wheel_task"]
                assert wheel["package_name"] == project["name"], (name, task["task_key"])
                assert wheel["entry_point"] in project["scripts"], (name, task["task_key"])
                python_tasks += 1
    assert python_tasks == 4, "the retraining job's task and the deployment job's three"


@pytest.mark.parametrize("target", CLASSIC_TARGETS)
def test_classic_targets_run_every_task_on_a_dbr_17_3_lts_ml_job_cluster(target: str) -> None:
    from utils.config import Config

    bundle = _target(target)
    assert _resolve("${var.spark_version}", target) == "17.3.x-cpu-ml-scala2.13"
    requirements = {"requirements": "${workspace.file_path}/requirements-databricks.txt"}
    for name, job in bundle["resources"]["jobs"].items():
        assert "environments" not in job, name
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in job["tasks"]:
            assert task["job_cluster_key"] in clusters, (name, task["task_key"])
            # every task gets the project's wheel (the artifact), notebooks too: `utils` then imports in a job
            # whatever the notebook's restart after `%pip` does to its path
            assert task["libraries"] == [requirements, {"whl": "./dist/*.whl"}], (name, task["task_key"])
        for cluster in clusters.values():
            assert cluster["spark_version"] == "${var.spark_version}"
            assert cluster["node_type_id"] == "${var.node_type}"
            env = cluster["spark_env_vars"]
            assert env["MLOPS_CATALOG"] == "${var.catalog}"
            assert env["MLOPS_SCHEMA"] == "${resources.schemas.mlops.name}", "the schema as created (dev_<you>_ prefix)"
            assert env["MLOPS_ENDPOINT"] == "${var.endpoint_name}"
            assert env["MLOPS_EXPERIMENT_NAME"] == "${var.experiment_name}"
            config_fields = {f.name for f in fields(Config)}
            assert {k.removeprefix("MLOPS_").lower() for k in env} <= config_fields


def test_node_type_is_required_and_named_for_every_cloud() -> None:
    node_type = _main()["variables"]["node_type"]
    classic_default = _main()["targets"]["dev"].get("default", False)  # a team that chose classic (copier) named its own
    assert ("default" not in node_type or classic_default) and "lookup" not in node_type, \
        "no cloud's node type is everyone's default"
    for cloud_example in ("m5d.xlarge", "Standard_D4ds_v5", "n2-standard-4"):
        assert cloud_example in node_type["description"]
    assert "i3.xlarge" not in (ROOT / "databricks.yml").read_text()


@pytest.mark.parametrize("target", SERVERLESS_TARGETS)
def test_serverless_target_runs_every_task_in_an_environment_of_version_4_or_newer(target: str) -> None:
    from databricks.bundles.jobs import JobEnvironment

    bundle = _target(target)
    assert bundle["mode"] == "development"
    for name, job in bundle["resources"]["jobs"].items():
        assert not job.get("job_clusters"), name
        environments = {e["environment_key"]: e for e in job["environments"]}
        for task in job["tasks"]:
            env = environments[task["environment_key"]]
            assert JobEnvironment.from_dict(env).spec.client is None, "client is deprecated: environment_version"
            assert int(_resolve(env["spec"]["environment_version"], target)) >= 4
            assert env["spec"]["dependencies"] == ["-r ${workspace.file_path}/requirements-databricks.txt",
                                                   "./dist/*.whl"]  # the artifact, for notebooks too
    assert (ROOT / "requirements-databricks.txt").is_file()


def test_job_parameters_carry_the_config_on_every_compute() -> None:
    """Serverless tasks get no Spark environment variables: the same names arrive as job parameters."""
    from utils.config import Config

    config_fields = {f.name for f in fields(Config)}
    for name, (job, _) in _resources()["jobs"].items():
        params = {p["name"]: p["default"] for p in job["parameters"]}
        assert params["catalog"] == "${var.catalog}" and params["schema"] == "${resources.schemas.mlops.name}", name
        assert params["endpoint"] == "${var.endpoint_name}", name
        assert params["experiment_name"] == "${var.experiment_name}", name
        others = {"rows", "seed", "scenario", "model_name", "model_version", "reason", "lakebase"}  # lakebase: a switch
        assert set(params) - others <= config_fields, name


def test_schema_and_volumes_let_a_fresh_target_bootstrap_itself() -> None:
    resources = _resources()
    assert "catalogs" not in resources, "the catalog is a prerequisite: Free Edition cannot create one from a bundle"
    (schema, _), = resources["schemas"].values()
    assert schema["catalog_name"] == "${var.catalog}" and schema["name"] == "${var.schema}"
    volumes = {spec["name"]: spec for spec, _ in resources["volumes"].values()}
    assert {"raw", "landing", "checkpoints"} <= set(volumes)
    for spec in volumes.values():
        assert spec["catalog_name"] == "${var.catalog}"
        assert spec["schema_name"] == "${resources.schemas.mlops.name}", "created after, and inside, the schema"
    text = "".join(p.read_text() for p in (ROOT / "resources").glob("*.yml") if p.name != "schema.yml")
    assert "${var.schema}" not in text, "refer to the schema as created (dev_<you>_ prefix), not by the variable"


@pytest.mark.parametrize("target", ("staging", "prod"))
def test_production_targets_deploy_one_copy_to_a_shared_root(target: str) -> None:
    bundle = _target(target)
    assert bundle["mode"] == "production"
    root = bundle["workspace"]["root_path"]  # the CLI refuses production mode without a target-level root_path
    assert root.startswith("/Workspace/Shared/") and "${bundle.target}" in root and "current_user" not in root
    text = (ROOT / "databricks.yml").read_text()
    assert "run_as:" in text and "service_principal_name:" in text, "say how a user deploy runs as a principal"


def test_names_do_not_collide_across_targets_or_users() -> None:
    targets = CLASSIC_TARGETS + SERVERLESS_TARGETS
    for field in ("endpoint_name", "experiment_name"):
        values = {t: _resolve(f"${{var.{field}}}", t) for t in targets}
        assert len(set(values.values())) == len(targets), values
    catalogs = {t: _resolve("${var.catalog}", t) for t in targets}
    assert len({catalogs[t] for t in CLASSIC_TARGETS}) == len(CLASSIC_TARGETS), catalogs
    for target in ("dev", "serverless"):
        assert _main()["targets"][target]["mode"] == "development", "schema prefixed per user"
        assert _resolve("${var.endpoint_name}", target, "ann") != _resolve("${var.endpoint_name}", target, "bob")
    for target in targets:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,63}", _resolve("${var.endpoint_name}", target)), target
        experiment = _resolve("${var.experiment_name}", target)
        assert "/" not in experiment or experiment.rsplit("/", 1)[0] == "/Shared", "a parent folder that exists"


@pytest.mark.parametrize("target", CLASSIC_TARGETS + SERVERLESS_TARGETS)
def test_each_target_sets_its_prod_catalog_and_development_never_writes_into_production(target: str) -> None:
    """Review R4: 04 promotes to the lifecycle job's parameter prod_catalog; every target sets it, never to its own
    catalog, and a development target (dev, serverless: Free Edition has only `workspace`) to none at all."""
    assert "prod_catalog" in _main()["targets"][target].get("variables", {}), "say where this target's 04 promotes to"
    lifecycle = _target(target)["resources"]["jobs"]["lifecycle"]
    params = {p["name"]: p["default"] for p in lifecycle["parameters"]}
    assert params["prod_catalog"] == "${var.prod_catalog}"
    prod, own = _resolve(params["prod_catalog"], target), _resolve("${var.catalog}", target)
    assert prod != own, "promoting into the catalog the lifecycle runs in copies the champion onto itself"
    if _target(target)["mode"] == "development":
        assert prod == "", "a developer's lifecycle must not register into a production catalog"


def test_monitor_task_is_given_the_retraining_job_id() -> None:
    jobs = {name: spec for name, (spec, _) in _resources()["jobs"].items()}
    monitor = next(t for t in jobs["lifecycle"]["tasks"] if t["task_key"] == "monitor")
    assert monitor["notebook_task"]["base_parameters"]["retrain_job_id"] == "${resources.jobs.retrain.id}"
    (task,) = jobs["retrain"]["tasks"]
    assert "notebook_task" not in task, "the retraining job runs the retrain task alone, not all of 06"
    args = task["python_wheel_task"]["parameters"]
    assert task["python_wheel_task"]["entry_point"] == "mlops-retraining-job" and args[0] == "retrain"
    parsed = dict(zip(args[1::2], args[2::2], strict=True))
    assert parsed["--reason"] == "{{job.parameters.reason}}"  # what start_retraining_job passes to run_now
    assert parsed["--deployment-job-id"] == "${resources.jobs.deployment.id}", "registration fires the gate"
    assert parsed["--catalog"] == "{{job.parameters.catalog}}" and parsed["--schema"] == "{{job.parameters.schema}}"
    names = {p["name"] for p in jobs["retrain"]["parameters"]}
    assert {a.removeprefix("{{job.parameters.").removesuffix("}}") for a in args if a.startswith("{{job.")} <= names
    from utils import retraining

    with pytest.raises(SystemExit):  # the command line the task runs is the module's own
        retraining.main(["--help"])


def test_deployment_job_is_linked_by_03_and_runs_evaluation_approval_deployment() -> None:
    """An MLflow 3 deployment job: job parameters model_name and model_version, three tasks in order, each
    calling the wheel's mlops-deployment-job entry point with its task name and the config; 03 gets the job's id."""
    from utils import deployment_job

    jobs = {name: spec for name, (spec, _) in _resources()["jobs"].items()}
    job = jobs["deployment"]
    assert {"model_name", "model_version"} <= {p["name"] for p in job["parameters"]}
    assert [t["task_key"] for t in job["tasks"]] == ["evaluation", "approval", "deployment"]
    for before, after in itertools.pairwise(job["tasks"]):
        assert after["depends_on"] == [{"task_key": before["task_key"]}]
    for task in job["tasks"]:
        assert task["python_wheel_task"]["entry_point"] == "mlops-deployment-job"
        args = task["python_wheel_task"]["parameters"]
        assert args[0] == task["task_key"] and args[0] in deployment_job.TASKS
        parsed = dict(zip(args[1::2], args[2::2], strict=True))
        assert parsed["--model-name"] == "{{job.parameters.model_name}}"
        assert parsed["--model-version"] == "{{job.parameters.model_version}}"
        assert parsed["--catalog"] == "{{job.parameters.catalog}}" and parsed["--schema"] == "{{job.parameters.schema}}"
    with pytest.raises(SystemExit):  # the command line the tasks run is the module's own
        deployment_job.main(["--help"])
    develop = next(t for t in jobs["lifecycle"]["tasks"] if t["task_key"] == "develop")
    assert develop["notebook_task"]["base_parameters"]["deployment_job_id"] == "${resources.jobs.deployment.id}"


def test_dashboard_resource_is_the_generated_definition_for_each_target() -> None:
    from databricks.bundles.dashboards import Dashboard

    from utils import lakeview
    from utils.config import Config

    spec, defined_in = _resources()["dashboards"]["mlops_360"]
    assert Dashboard.from_dict(spec).file_path == spec["file_path"]
    assert spec["dataset_catalog"] == "${var.catalog}"
    assert spec["dataset_schema"] == "${resources.schemas.mlops.name}"
    assert spec["warehouse_id"] == "${var.warehouse_id}"
    stored = (defined_in.parent / spec["file_path"]).read_text(encoding="utf-8")
    assert stored == lakeview.render(Config()), "regenerate it: python -m utils.lakeview"
    warehouse = _main()["variables"]["warehouse_id"]
    assert warehouse["lookup"]["warehouse"] and "--var warehouse_id=" in warehouse["description"]


def test_nothing_personal_is_hard_coded() -> None:
    text = (ROOT / "databricks.yml").read_text() + "".join(p.read_text() for p in (ROOT / "resources").glob("*.yml"))
    for personal in ("@", "/Users/", "dapi", "token:"):
        assert personal not in text
