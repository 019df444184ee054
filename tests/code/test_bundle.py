"""The Databricks Asset Bundle validates against the bundle models, offline."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _bundle() -> tuple[dict, dict]:
    main = yaml.safe_load((ROOT / "databricks.yml").read_text())
    jobs: dict = {}
    for pattern in main.get("include", []):
        for path in sorted(ROOT.glob(pattern)):
            jobs.update(yaml.safe_load(path.read_text())["resources"]["jobs"])
    return main, jobs


def test_jobs_parse_as_bundle_job_models() -> None:
    from databricks.bundles.jobs import Job

    _, jobs = _bundle()
    assert {"plantly_lifecycle", "plantly_retrain"} <= set(jobs)
    for spec in jobs.values():
        job = Job.from_dict(spec)
        assert job.tasks, job.name


def test_lifecycle_job_runs_every_notebook_in_order() -> None:
    _, jobs = _bundle()
    tasks = jobs["plantly_lifecycle"]["tasks"]
    paths = [t["notebook_task"]["notebook_path"] for t in tasks]
    expected = [f"./notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert [p for p in paths if p in expected] == expected, "every notebook, in lifecycle order"
    for before, after in zip(tasks, tasks[1:]):
        assert {"task_key": before["task_key"]} in after["depends_on"]
    for path in paths:
        assert (ROOT / path).exists(), path


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
