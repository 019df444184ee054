"""The template: `copier copy` renders a team's project, `copier update` brings later template versions into it.

Every render starts from a copy of this repository's tracked files: a git repository tagged v1, as a team's
`copier copy <repository>` sees it, or, for the render matrix, the plain folder (twice as fast). Every combination
of the answers that choose is rendered and checked without Spark (about 30 s on two busy cores); for one, the
generated project's own tests run in a subprocess: its fast ones, and a few Spark-backed ones that build table and
model names from its config (about two minutes on two cores).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

copier = pytest.importorskip("copier")

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "copier.yml").exists():
    pytest.skip("a generated project is not a template", allow_module_level=True)

ACME = {"project_name": "acme_recs", "dev_catalog": "acme_dev", "prod_catalog": "acme_prod",
        "compute": "classic", "node_type": "m5d.xlarge", "ci": "github"}
# Where the example's own name may stay in a generated project: the example a team replaces (the data generator,
# the example's modules utils/plantly_*.py and the lines importing them, the raw feed's data dictionary, the
# notebooks' story of the shop), the recorded benchmark figures of the example, and the guide to replacing it.
EXAMPLE_FILES = re.compile(r"^(utils/datagen\.py|utils/plantly_\w+\.py|data/raw/README\.md|notebooks/\d\d_\w+\.ipynb"
                           r"|bench/results\.md|docs/make-it-yours\.md)$")
EXAMPLE_MODULE = re.compile(r"\butils\.plantly_\w+|\bplantly_(features|columns)\b")
# Files that name the example outside its domain and cannot change by hand: uv's "# via <distribution>" annotations
# (`make lock` regenerates them), and the README, whose body tells the running example's story. Listed so that a new
# mention anywhere else fails here; the list only shrinks.
NOT_YET_NEUTRAL = {
    "README.md",
    "requirements.lock", "bench/requirements-bench.txt",
}
# Spark-backed tests the generated project runs under its own names (one engine start; about two minutes on two
# busy cores): tables in the project's catalog through Spark SQL, the table helpers, and feature tables.
SPARK_TESTS = [
    "tests/code/test_data_profiling.py",
    "tests/code/test_lakehouse.py::test_parse_name_splits_and_lowercases",
    "tests/code/test_lakehouse.py::test_pandas_and_arrow_round_trip_into_a_real_delta_table",
    "tests/code/test_lakehouse.py::test_merge_upserts_and_counts",
    "tests/code/test_features.py::test_create_get_and_drop_table",
    "tests/code/test_features.py::test_write_table_merge_upserts_by_primary_key",
    "tests/code/test_features.py::test_unknown_write_mode_and_missing_table",
    "tests/code/test_features.py::test_point_in_time_join_never_leaks_the_future_where_a_naive_join_does",
]
TEMPLATE_ONLY = {"copier.yml", "tests/code/test_template.py", "tests/notebooks/test_generated_project.py"}
"""The template's own files and tests (copier.yml's _exclude), which a generated project does not get."""
GIT_ENV = {"GIT_AUTHOR_NAME": "Template Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Template Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
# Every combination of the answers that choose (compute, CI) or may be left empty (the production catalog), under a
# team's project name; the node type is asked for classic compute only, and the development catalog is Free
# Edition's `workspace` for the serverless team. The default answers render this repository itself (tested below).
COMBINATIONS = [
    pytest.param({"project_name": "acme_recs", "compute": compute, "ci": ci, "prod_catalog": prod,
                  **({"dev_catalog": "acme_dev", "node_type": "Standard_D4ds_v5"} if compute == "classic" else {})},
                 id=f"{compute}-ci_{ci}-{'prod_catalog' if prod else 'no_prod_catalog'}")
    for compute, ci, prod in itertools.product(("serverless", "classic"), ("github", "none"), ("acme_live", ""))
]
# Template syntax a render must not leave behind: a Jinja expression or statement, or copier's older delimiters
# around an answer ([[x]] alone is everyday Python, a list in a list), in a file's text or its name.
LEFTOVER = re.compile(r"\{\{-?\s*[^{}\s][^{}]*?\}\}|\{%-?\s*\w+[^%]*?%\}"
                      r"|\[\[-?\s*(project_name|dev_catalog|prod_catalog|compute|node_type|ci|distribution|project_dash|_copier_\w+)\b")
# What looks like template syntax in a generated project and is not the template's, by file: Databricks' dynamic value
# references to job parameters (in an f-string too), GitHub Actions expressions in the workflows, and the nbconvert template runner.py
# extends JupyterLab's page with. The 360° page's own Jinja templates (utils/templates/*.j2) are not read.
NOT_TEMPLATE_SYNTAX = [
    (re.compile(r".+"), re.compile(r"\{\{(\{\{)?job\.parameters\.(\w+|<\w+>|\{\w+\})?(\}\})*")),  # f"{{{{...}}}}" too
    (re.compile(r"\.github/workflows/[\w-]+\.yml"), re.compile(r"\$\{\{[^{}]*\}\}")),
    (re.compile(r"tools/runner\.py"), re.compile(r"\{%-? (extends|block|endblock)\b[^%]*%\}")),
]
JINJA_TEMPLATES = re.compile(r"utils/templates/\w+\.html\.j2")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _tracked(root: Path) -> list[str]:
    """The files git tracks in ``root`` (as they are in the working tree; deleted ones left out)."""
    return [p for p in _git(root, "ls-files", "-z").split("\0") if p and (root / p).is_file()]


def _commit_all(repo: Path, message: str, tag: str | None = None) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--no-verify", "-m", message)
    if tag:
        _git(repo, "tag", tag)


def _copy_tracked(dest: Path) -> Path:
    """``dest`` holding a copy of this repository's tracked files, as they are in the working tree."""
    for rel in _tracked(ROOT):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def _template_repo(dest: Path) -> Path:
    """A git repository holding this repository's tracked files, committed and tagged v1."""
    _copy_tracked(dest)
    _git(dest, "init", "-q", "-b", "main")
    _commit_all(dest, "v1", tag="v1")
    return dest


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        return _template_repo(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def plain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tracked files without git: copier renders such a folder in place instead of cloning a tag first, which
    makes a render about twice as fast (the render matrix uses it; the tests of tags and updates use ``template``)."""
    return _copy_tracked(tmp_path_factory.mktemp("plain-template"))


@pytest.fixture(scope="module")
def acme(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("acme") / "acme-recs"
    copier.run_copy(str(template), dst, data=ACME, defaults=True, vcs_ref="v1", quiet=True)
    return dst


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_default_answers_render_this_repository_file_for_file(template: Path, tmp_path: Path) -> None:
    """Each twin X.jinja renders, with the default answers, exactly the X this repository runs with."""
    copier.run_copy(str(template), tmp_path / "p", defaults=True, vcs_ref="v1", quiet=True)
    rendered = _files(tmp_path / "p") - {".copier-answers.yml"}
    own = {f for f in _tracked(ROOT) if not f.endswith(".jinja")} - TEMPLATE_ONLY
    assert rendered == own, (sorted(rendered - own)[:10], sorted(own - rendered)[:10])
    differ = [f for f in sorted(own) if (tmp_path / "p" / f).read_bytes() != (ROOT / f).read_bytes()]
    assert not differ, f"the template's X.jinja and X no longer agree: {differ}"
    assert not (tmp_path / "p" / "copier.yml").exists()


def test_other_answers_give_the_teams_names_everywhere(acme: Path, template: Path) -> None:
    twins = [p.relative_to(template).as_posix().removesuffix(".jinja") for p in template.rglob("*.jinja")]
    for rel in twins:
        text = (acme / rel).read_text()
        assert "{%" not in text and not re.search(r"\{\{(?!\s*job\.)", text), f"template syntax left in {rel}"
    assert 'name = "acme-recs-mlops"' in (acme / "pyproject.toml").read_text()
    bundle = (acme / "databricks.yml").read_text()
    assert "  name: acme-recs-mlops\n" in bundle and "catalog: acme_dev" in bundle and "default: m5d.xlarge" in bundle
    assert 'prod_catalog: "acme_prod"' in bundle and "catalog: acme_recs_staging" in bundle
    assert "acme-recs-dev-${workspace.current_user.short_name}" in bundle
    assert "package_name: acme-recs-mlops" in (acme / "resources/jobs.yml").read_text()
    assert 'NAME = "acme_recs"' in (acme / "utils/project.py").read_text()
    assert (acme / ".github/workflows/ci.yml").exists()
    answers = (acme / ".copier-answers.yml").read_text()
    assert "project_name: acme_recs" in answers and "_commit: v1" in answers


def _example_name_outside_the_example(project: Path) -> dict[str, list[str]]:
    """File -> its first lines naming the example (``git grep -i plantly``) outside the example's own domain."""
    hits: dict[str, list[str]] = {}
    for rel in sorted(_files(project)):
        try:
            lines = (project / rel).read_text().splitlines()
        except UnicodeDecodeError:
            continue
        found = [line for line in lines if "plantly" in line.lower() and not EXAMPLE_MODULE.search(line)]
        if found and not EXAMPLE_FILES.match(rel) and rel not in NOT_YET_NEUTRAL:
            hits[rel] = found[:2]
    return hits


def test_only_the_example_keeps_the_example_name(acme: Path) -> None:
    hits = _example_name_outside_the_example(acme)
    assert not hits, f"the example's name outside the example's domain: {hits}"


def test_no_ci_answer_leaves_the_workflows_out(template: Path, tmp_path: Path) -> None:
    copier.run_copy(str(template), tmp_path / "p", data={"ci": "none"}, defaults=True, vcs_ref="v1", quiet=True)
    assert not (tmp_path / "p" / ".github").exists() and (tmp_path / "p" / "Makefile").exists()
    assert "default: true" in (tmp_path / "p" / "databricks.yml").read_text()


@pytest.mark.parametrize(("answers", "rule"), [
    ({"project_name": "Acme-Recs"}, "must be a slug"),
    ({"project_name": "acme recs"}, "must be a slug"),
    ({"dev_catalog": "main"}, "not `main`"),
    ({"dev_catalog": "acme-dev"}, "lower-case letters, digits and underscores"),
    ({"prod_catalog": "workspace"}, "must differ from the development catalog"),
    ({"compute": "classic"}, "classic compute needs a node type"),
])
def test_bad_answers_are_refused_with_the_rule(template: Path, tmp_path: Path, answers: dict, rule: str) -> None:
    with pytest.raises(ValueError, match=re.escape(rule)):
        copier.run_copy(str(template), tmp_path / "p", data=answers, defaults=True, vcs_ref="v1", quiet=True)
    assert not (tmp_path / "p" / "pyproject.toml").exists()


def _leftover_template_syntax(project: Path) -> dict[str, list[str]]:
    """File -> the template syntax a render left in its text or its name (what is not the template's set apart)."""
    left: dict[str, list[str]] = {}
    for rel in sorted(_files(project)):
        found = [m.group(0) for m in LEFTOVER.finditer(rel)]
        if not JINJA_TEMPLATES.fullmatch(rel):
            try:
                text = (project / rel).read_text()
            except UnicodeDecodeError:  # an image
                text = ""
            for where, allowed in NOT_TEMPLATE_SYNTAX:
                text = allowed.sub("", text) if where.fullmatch(rel) else text
            found += [m.group(0) for m in LEFTOVER.finditer(text)]
        if found:
            left[rel] = found[:3]
    return left


def _generated_bundle_checks(project: Path) -> tuple[ModuleType, list[str]]:
    """Run the generated project's own bundle tests that read only its files, here, against its files.

    Its ``tests/code/test_bundle.py`` finds the project from its own path. Tests that import ``utils`` are left to
    the project's own run (here they would import this repository's package, not the project's); a parametrised
    test runs for each of its targets. The YAML files are parsed once, not at every helper call (a combination took
    about 15 s on two busy cores, now about 4 s). Returns the loaded module (its ``_target`` merges a target as the CLI does) and the tests run.
    """
    spec = importlib.util.spec_from_file_location(f"generated_test_bundle_{project.name}", project / "tests/code/test_bundle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._main, module._resources = functools.cache(module._main), functools.cache(module._resources)
    ran = []
    for name, check in vars(module).items():
        if not name.startswith("test_") or re.search(r"^\s*(from|import) utils\b", inspect.getsource(check), re.MULTILINE):
            continue
        marks = [m for m in getattr(check, "pytestmark", []) if m.name == "parametrize"]
        for value in marks[0].args[1] if marks else [None]:
            check(value) if marks else check()
        ran.append(name)
    return module, ran


@pytest.mark.parametrize("answers", COMBINATIONS)
def test_every_combination_of_answers_renders_a_clean_project(plain_template: Path, tmp_path: Path, answers: dict) -> None:
    """Issue #33 item 5: each combination renders without template syntax left, with the files its answers call for,
    a bundle whose default target runs on the chosen compute and whose prod target uses the production catalog
    answered, the generated project's own bundle checks passing, and the team's name wherever a name appears."""
    project = tmp_path / "acme-recs"
    copier.run_copy(str(plain_template), project, data=answers, defaults=True, quiet=True)
    name, dash, classic = answers["project_name"], answers["project_name"].replace("_", "-"), answers["compute"] == "classic"
    dev_catalog = answers.get("dev_catalog", "workspace")

    assert not _leftover_template_syntax(project), f"template syntax left: {_leftover_template_syntax(project)}"
    expected = {rel.removesuffix(".jinja") for rel in _files(plain_template)} - TEMPLATE_ONLY
    if answers["ci"] == "none":
        expected = {rel for rel in expected if not rel.startswith(".github/")}
    assert _files(project) == expected | {".copier-answers.yml"}, sorted(_files(project) ^ (expected | {".copier-answers.yml"}))
    assert any(rel.startswith(".github/workflows/") for rel in expected) == (answers["ci"] == "github")
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {k: recorded.get(k) for k in answers} == answers, "copier update replays these answers"

    module, ran = _generated_bundle_checks(project)
    assert len(ran) >= 8, ran
    bundle = yaml.safe_load((project / "databricks.yml").read_text())
    assert {"dev", "serverless", "staging", "prod"} <= set(bundle["targets"])
    (default,) = [t for t, spec in bundle["targets"].items() if spec.get("default")]
    assert default == ("dev" if classic else "serverless"), "the default target runs on the compute answered"
    assert bundle["variables"]["node_type"].get("default") == answers.get("node_type")
    for target in ("dev", "prod", default):
        for job_name, job in module._target(target)["resources"]["jobs"].items():
            on_clusters = target != "serverless"
            assert bool(job.get("job_clusters")) == on_clusters and bool(job.get("environments")) != on_clusters, (target, job_name)
            for cluster in job.get("job_clusters", []):
                assert cluster["new_cluster"]["node_type_id"] == "${var.node_type}", (target, job_name)
    variables = {t: module._target(t)["variables"] for t in bundle["targets"]}
    assert variables["prod"]["catalog"] == (answers["prod_catalog"] or f"{name}_prod")
    assert variables["staging"]["prod_catalog"] == answers["prod_catalog"], "staging promotes to the production catalog"
    assert variables["dev"]["catalog"] == variables["serverless"]["catalog"] == dev_catalog
    assert variables["dev"]["prod_catalog"] == variables["serverless"]["prod_catalog"] == ""

    assert bundle["bundle"]["name"] == f"{dash}-mlops"
    assert f'name = "{dash}-mlops"' in (project / "pyproject.toml").read_text()
    assert (project / "README.md").read_text().startswith(f"# {dash}-mlops: ")
    names = (project / "utils/project.py").read_text()
    assert f'NAME = "{name}"' in names and f'PROD_CATALOG = "{answers["prod_catalog"]}"' in names
    assert variables["dev"]["endpoint_name"].startswith(f"{dash}-dev-") and variables["prod"]["experiment_name"].startswith(f"/Shared/{name}_")
    assert not _example_name_outside_the_example(project), _example_name_outside_the_example(project)


def test_update_brings_a_template_change_and_keeps_the_teams_edit(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    _template_repo(template)
    project = tmp_path / "acme-recs"
    copier.run_copy(str(template), project, data=ACME, defaults=True, vcs_ref="v1", quiet=True)
    _git(project, "init", "-q", "-b", "main")
    _commit_all(project, "generated from the template v1")
    team_file = project / "data/raw/README.md"
    team_file.write_text(team_file.read_text() + "\nOur own feed: acme orders.\n")
    _commit_all(project, "team edit")

    makefile = template / "Makefile"
    makefile.write_text(makefile.read_text() + "\n# a template improvement (v2)\n")
    _commit_all(template, "v2", tag="v2")

    copier.run_update(project, data={}, defaults=True, overwrite=True, vcs_ref="v2", quiet=True)
    assert "# a template improvement (v2)" in (project / "Makefile").read_text(), "the template change arrived"
    assert "Our own feed: acme orders." in team_file.read_text(), "the team's edit is kept"
    answers = (project / ".copier-answers.yml").read_text()
    assert "_commit: v2" in answers and "project_name: acme_recs" in answers
    assert 'NAME = "acme_recs"' in (project / "utils/project.py").read_text()
    assert not list(project.rglob("*.rej")), "no conflicts in files the team did not touch"

    _commit_all(project, "update to v2")
    (project / "Makefile").write_text((project / "Makefile").read_text() + "\n# uncommitted\n")
    with pytest.raises(Exception, match="dirty"):
        copier.run_update(project, data={}, defaults=True, overwrite=True, vcs_ref="v2", quiet=True)


def _project_env(**extra: str) -> dict[str, str]:
    """This process's environment less what points at this repository's state (``MLOPS_*``, a Spark engine, MLflow)."""
    inherited = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                 "MLFLOW_EXPERIMENT_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") and k not in inherited}
    return {**env, **extra}


def _run_tests(project: Path, *args: str, env: dict[str, str], timeout: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_the_generated_project_passes_its_own_fast_tests(acme: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import utils.project as p; print(p.NAME, p.__file__)"],
                           cwd=acme, capture_output=True, text=True, timeout=60, check=False)
    assert probe.stdout.startswith("acme_recs ") and str(acme) in probe.stdout, probe.stderr
    _run_tests(acme, "tests/code/test_config.py", "tests/code/test_bundle.py", "tests/code/test_prod_catalog.py",
               env=_project_env(), timeout=600)


def test_the_generated_projects_spark_tests_use_its_names(acme: Path) -> None:
    """The project's Spark-backed tests, run in it: the local engine answers to its catalog ``acme_recs`` only, so
    a table or model name still spelled for the example would fail here. Delta's jars are this repository's
    (``MLOPS_JARS_DIR``; a team's project installs its own with ``make install``): nothing is downloaded."""
    from utils.local import jvm

    jars = jvm.jars_dir()
    assert (jars / "manifest.json").exists(), f"no Delta Lake jars in {jars}: run `make install` first"
    _run_tests(acme, *SPARK_TESTS, env=_project_env(MLOPS_JARS_DIR=str(jars)), timeout=900)
