"""The Databricks Asset Bundle validates against the bundle models, offline."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _resources() -> dict[str, dict[str, tuple[dict, Path]]]:
    """Kind (jobs, dashboards) -> name -> (spec, the file defining it): bundle paths are relative to that file."""
    main = yaml.safe_load((ROOT / "databricks.yml").read_text())
    out: dict[str, dict[str, tuple[dict, Path]]] = {}
    for pattern in main.get("include", []):
        for path in sorted(ROOT.glob(pattern)):
            for kind, specs in yaml.safe_load(path.read_text())["resources"].items():
                for name, spec in specs.items():
                    out.setdefault(kind, {})[name] = (spec, path)
    return out


def _bundle() -> tuple[dict, dict]:
    main = yaml.safe_load((ROOT / "databricks.yml").read_text())
    return main, {name: spec for name, (spec, _) in _resources().get("jobs", {}).items()}


def test_jobs_parse_as_bundle_job_models() -> None:
    from databricks.bundles.jobs import Job

    _, jobs = _bundle()
    assert {"plantly_lifecycle", "plantly_retrain"} <= set(jobs)
    for spec in jobs.values():
        job = Job.from_dict(spec)
        assert job.tasks, job.name


def test_lifecycle_job_runs_every_notebook_in_order() -> None:
    spec, defined_in = _resources()["jobs"]["plantly_lifecycle"]
    tasks = spec["tasks"]
    paths = [(defined_in.parent / t["notebook_task"]["notebook_path"]).resolve() for t in tasks]
    expected = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert paths == expected, "every notebook, in lifecycle order, by a path relative to the job's file"
    for before, after in zip(tasks, tasks[1:]):
        assert {"task_key": before["task_key"]} in after["depends_on"]
    for name, (job, path) in _resources()["jobs"].items():
        for task in job["tasks"]:
            assert (path.parent / task["notebook_task"]["notebook_path"]).is_file(), (name, task["task_key"])


def test_dashboard_resource_is_the_generated_definition_for_each_target() -> None:
    from databricks.bundles.dashboards import Dashboard

    from utils import lakeview
    from utils.config import Config

    spec, defined_in = _resources()["dashboards"]["plantly_360"]
    assert Dashboard.from_dict(spec).file_path == spec["file_path"]
    assert spec["dataset_catalog"] == "${var.catalog}" and spec["dataset_schema"] == "${var.schema}"
    assert spec["warehouse_id"] == "${var.warehouse_id}"
    stored = (defined_in.parent / spec["file_path"]).read_text(encoding="utf-8")
    assert stored == lakeview.render(Config()), "regenerate it: python -m utils.lakeview"
    main = yaml.safe_load((ROOT / "databricks.yml").read_text())
    assert "warehouse_id" in main["variables"]


def test_targets_map_to_catalogs_and_nothing_personal() -> None:
    main, jobs = _bundle()
    assert {"dev", "staging", "prod"} <= set(main["targets"])
    catalogs = {t: spec["variables"]["catalog"] for t, spec in main["targets"].items()}
    assert len(set(catalogs.values())) == 3
    text = (ROOT / "databricks.yml").read_text() + "".join(p.read_text() for p in (ROOT / "resources").glob("*.yml"))
    for personal in ("@", "/Users/", "dapi", "token:"):
        assert personal not in text
    for spec in jobs.values():
        for cluster in spec["job_clusters"]:
            assert cluster["new_cluster"]["spark_env_vars"]["MLOPS_CATALOG"] == "${var.catalog}"
