"""Where the lifecycle puts files on Databricks: volumes for what Spark reads, local disk for scratch.

These run the Databricks branches of ``utils.platform`` off Databricks by setting the runtime
variable; the SQL they send is recorded rather than run (open-source Spark has no volumes).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from utils import platform
from utils.config import Config
from utils.platform import environment, runtime
from utils.project import DISTRIBUTION

PROJECT = Config().project
MODEL = Config().model_base_name  # <project>_recommender


def endpoint_spelling(name: str) -> str:
    """``name`` as an endpoint name spells it: ``-`` for ``_``, lower case, at most 63 characters."""
    return name.replace("_", "-").lower()[:63].strip("-")


@pytest.fixture
def on_databricks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.delenv("MLOPS_STATE_DIR", raising=False)
    monkeypatch.setenv("MLOPS_CATALOG", "workshop")
    monkeypatch.setenv("MLOPS_SCHEMA", "ada")


def test_spark_read_folders_are_volumes_on_databricks(on_databricks: None) -> None:
    assert platform.raw_data_dir() == Path("/Volumes/workshop/ada/raw")
    assert platform.files_dir("landing") == Path("/Volumes/workshop/ada/landing")  # 05's stream reads events there
    assert platform.files_dir("checkpoints") == Path("/Volumes/workshop/ada/checkpoints")


def test_scratch_state_is_on_driver_disk_not_in_the_workspace_folder(on_databricks: None) -> None:
    state = platform.state_dir()
    assert not str(state).startswith("/Workspace") and not state.is_relative_to(platform.REPO_ROOT)
    assert state.name == DISTRIBUTION
    reports = platform.output_dir("reports")  # 06's dashboard page: not written into the Git folder either
    assert reports.parent == state and not reports.is_relative_to(platform.REPO_ROOT)


def test_state_dir_variable_still_wins_on_databricks(on_databricks: None, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    assert platform.state_dir() == tmp_path.resolve()


def test_local_folders_follow_the_state_folder(isolated_state: Path) -> None:
    assert platform.files_dir("landing") == isolated_state.resolve() / "landing"
    assert platform.files_dir("checkpoints") == isolated_state.resolve() / "checkpoints"


class _RecordingSpark:
    def __init__(self, refuse: str = "") -> None:
        self.statements: list[str] = []
        self.refuse = refuse

    def sql(self, statement: str) -> None:
        if self.refuse and self.refuse in statement:
            raise RuntimeError("[NO_SUCH_CATALOG_EXCEPTION] Catalog 'workshop' was not found.\nSQLSTATE: 42704")
        self.statements.append(statement)


def test_ensure_dirs_creates_the_schema_and_its_volumes_once_on_databricks(
        on_databricks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    spark = _RecordingSpark()
    monkeypatch.setattr(runtime, "get_spark", lambda *a, **k: spark)
    monkeypatch.setattr(runtime, "_UC_READY", set())
    platform.ensure_dirs()
    platform.ensure_dirs()
    assert spark.statements == [
        "CREATE SCHEMA IF NOT EXISTS `workshop`.`ada`",
        "CREATE VOLUME IF NOT EXISTS `workshop`.`ada`.`raw`",
        "CREATE VOLUME IF NOT EXISTS `workshop`.`ada`.`landing`",
        "CREATE VOLUME IF NOT EXISTS `workshop`.`ada`.`checkpoints`",
    ]


def test_a_schema_that_cannot_be_created_is_named_with_what_to_do(
        on_databricks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "get_spark", lambda *a, **k: _RecordingSpark(refuse="CREATE SCHEMA"))
    monkeypatch.setattr(runtime, "_UC_READY", set())
    with pytest.raises(platform.EnvironmentProblem, match=r"CREATE SCHEMA IF NOT EXISTS `workshop`.`ada` failed "
                                                          r"\(\[NO_SUCH_CATALOG_EXCEPTION\].*MLOPS_CATALOG"):
        platform.ensure_dirs()


def test_promotion_creates_the_prod_models_schema_on_databricks(on_databricks: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spark = _RecordingSpark()
    monkeypatch.setattr(runtime, "get_spark", lambda *a, **k: spark)
    platform.ensure_model_schema(f"{PROJECT}_prod.ada.{MODEL}")
    assert spark.statements == [f"CREATE SCHEMA IF NOT EXISTS `{PROJECT}_prod`.`ada`"]
    monkeypatch.setattr(runtime, "get_spark", lambda *a, **k: _RecordingSpark(refuse="CREATE SCHEMA"))
    with pytest.raises(platform.EnvironmentProblem, match=rf"`{PROJECT}_prod`.`ada` failed .*MLOPS_PROD_CATALOG"):
        platform.ensure_model_schema(f"{PROJECT}_prod.ada.{MODEL}")
    with pytest.raises(ValueError, match="catalog.schema.model"):
        platform.ensure_model_schema(MODEL)


def test_experiment_is_a_name_locally() -> None:
    assert platform.experiment_path(MODEL) == MODEL
    assert platform.current_user() == ""


# ---------------------------------------------------------------- names that must not collide between targets


def test_each_catalog_and_schema_gets_its_own_serving_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from utils.config import get_config

    dev, prod = get_config(catalog=f"{PROJECT}_dev"), get_config(catalog=f"{PROJECT}_prod")
    assert dev.endpoint_name == endpoint_spelling(f"{MODEL}-{PROJECT}-dev-mlops") != prod.endpoint_name
    assert get_config(schema="ada").endpoint_name != get_config(schema="grace").endpoint_name
    monkeypatch.setenv("MLOPS_ENDPOINT", "recs-live")
    assert get_config().endpoint_name == "recs-live"
    long = get_config(catalog="c" * 80)
    assert len(long.endpoint_name) <= 63 and not long.endpoint_name.endswith("-")


def test_the_experiment_lives_in_the_users_folder_per_catalog_and_schema(on_databricks: None,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "current_user", lambda: "ada@example.com")
    assert platform.experiment_path(MODEL) == f"/Users/ada@example.com/workshop.ada.{MODEL}"
    assert platform.experiment_path("/Shared/given") == "/Shared/given"


class _Widgets:
    """Databricks notebook widgets as a job fills them: job parameters become widgets."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def text(self, name: str, default: str) -> None:
        self.values.setdefault(name, default)

    def get(self, name: str) -> str:
        if name not in self.values:
            raise ValueError(f"InputWidgetNotDefined: {name}")
        return self.values[name]


def test_serverless_job_parameters_become_the_config(on_databricks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serverless jobs have no cluster variables: catalog, schema and endpoint arrive as job parameters."""
    from types import SimpleNamespace

    from utils.config import get_config

    for name in ("MLOPS_CATALOG", "MLOPS_SCHEMA", "MLOPS_ENDPOINT"):
        monkeypatch.setenv(name, "")  # unset for the code, and restored by monkeypatch after the test
    dbutils = SimpleNamespace(widgets=_Widgets({"catalog": "workspace", "schema": "dev_ada_mlops", "endpoint": "",
                                                "rows": "6000"}))
    monkeypatch.setattr(environment, "_dbutils", lambda: dbutils)
    monkeypatch.setattr(environment, "_JOB_CONFIG_READ", False)
    assert platform.get_param("rows", 20000, int) == 6000
    cfg = get_config()
    assert (cfg.catalog, cfg.schema) == ("workspace", "dev_ada_mlops")
    assert cfg.endpoint_name == endpoint_spelling(f"{MODEL}-workspace-dev-ada-mlops")  # empty parameter: derived name


def test_the_lakebase_opt_in_is_a_job_parameter_too(on_databricks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serverless has no environment variables: the widget / job parameter ``lakebase`` opts in (review R17)."""
    from types import SimpleNamespace

    monkeypatch.setenv("MLOPS_LAKEBASE", "")  # unset for the code, restored after the test
    monkeypatch.setattr(environment, "_dbutils", lambda: SimpleNamespace(widgets=_Widgets({"lakebase": "true"})))
    monkeypatch.setattr(environment, "_JOB_CONFIG_READ", False)
    assert not platform.lakebase_enabled()
    platform.get_param("rows", 20000, int)
    assert platform.lakebase_enabled() and platform.automatic_feature_lookup()


def test_by_hand_each_user_gets_a_schema_of_their_own(on_databricks: None, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Review finding 15: attendees running the notebooks by hand must not share <project>.mlops."""
    from types import SimpleNamespace

    from utils.config import get_config

    monkeypatch.setenv("MLOPS_SCHEMA", "")  # no schema given (restored after the test)
    monkeypatch.setattr(environment, "current_user", lambda: "Ada.Lovelace-2@example.com")
    monkeypatch.setattr(environment, "_dbutils", lambda: SimpleNamespace(widgets=_Widgets({})))  # an interactive notebook
    monkeypatch.setattr(environment, "_JOB_CONFIG_READ", False)
    assert platform.get_param("rows", 20000, int) == 20000
    cfg = get_config()
    own = platform.personal_schema("mlops", "Ada.Lovelace-2@example.com")
    assert own.startswith("mlops_ada_lovelace_2_") and cfg.schema == own
    assert cfg.model_name == f"workshop.{own}.{MODEL}"
    assert cfg.endpoint_name == endpoint_spelling(f"{MODEL}-workshop-{own}")
    assert f"schema {own}: your own" in capsys.readouterr().out


def test_a_given_schema_wins_over_the_personal_one(on_databricks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from utils.config import get_config

    monkeypatch.setenv("MLOPS_SCHEMA", "")
    monkeypatch.setattr(environment, "current_user", lambda: "ada@example.com")
    monkeypatch.setattr(environment, "_dbutils", lambda: SimpleNamespace(widgets=_Widgets({"schema": "team_recs"})))
    monkeypatch.setattr(environment, "_JOB_CONFIG_READ", False)
    platform.get_param("rows", 20000, int)
    assert get_config().schema == "team_recs"


USERS = ("ada.lovelace@a.com", "ada_lovelace@b.com", "ada-lovelace@a.com", "Ada.Lovelace@a.com", "_ada_lovelace@a.com",
         "ada@example.com", "0a1b-c2d3-service-principal", "x.y+z@q.com", "ÄÖ@x", "ÜÖ@x", "a" * 300, "a" * 299 + "b")


def test_personal_schema_names_are_valid_identifiers() -> None:
    from utils.parameters import PATTERNS

    for user in USERS:
        name = platform.personal_schema("mlops", user)
        assert re.fullmatch(PATTERNS["schema"], name) and len(name) <= 255, name
        assert name == platform.personal_schema("mlops", user), "the same user gets the same schema every time"
    assert platform.personal_schema("mlops", "") == ""


def test_personal_schema_keeps_users_apart_when_sanitising_loses_characters() -> None:
    """Review R21: ``ada.lovelace``, ``ada_lovelace`` and ``ada-lovelace`` must not share tables, model and endpoint."""
    names = {user: platform.personal_schema("mlops", user) for user in USERS if user != "Ada.Lovelace@a.com"}
    assert len(set(names.values())) == len(names), names
    # a name that maps cleanly keeps its plain schema (existing schemas do not move); user names ignore case
    assert names["ada_lovelace@b.com"] == "mlops_ada_lovelace" and names["ada@example.com"] == "mlops_ada"
    assert platform.personal_schema("mlops", "Ada@Example.com") == "mlops_ada"
    # a name that lost characters keeps the readable part and ends in a short hash of the full user name
    assert re.fullmatch(r"mlops_ada_lovelace_[0-9a-f]{8}", names["ada.lovelace@a.com"])
    assert re.fullmatch(r"mlops_0a1b_c2d3_service_principal_[0-9a-f]{8}", names["0a1b-c2d3-service-principal"])
    assert re.fullmatch(r"mlops_u[0-9a-f]{8}", names["ÄÖ@x"])
    assert len(names["a" * 300]) == 255, "a cut name keeps its hash"


def test_no_workspace_answer_keeps_the_shared_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> str:
        raise RuntimeError("no credentials")

    monkeypatch.setattr(environment, "current_user", refuse)
    assert platform.personal_schema("mlops") == ""


def test_models_carry_their_lookups_where_serving_can_look_features_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Locally the endpoint reads the SQLite online store; on Databricks Model Serving needs a Lakebase store."""
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLOPS_LAKEBASE", raising=False)
    assert platform.automatic_feature_lookup()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert not platform.automatic_feature_lookup(), "no online store Model Serving could read: log the model plain"
    monkeypatch.setenv("MLOPS_LAKEBASE", "true")
    assert platform.automatic_feature_lookup()


def test_no_training_set_to_log_with_where_serving_cannot_look_features_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """``model_training_set`` decides for every caller: on Databricks without Lakebase the model is logged plain."""
    from utils.plantly_features import model_training_set

    class NoClient:
        def create_training_set(self, **kwargs: object) -> None:
            raise AssertionError("no training set may be built where serving cannot look features up")

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    monkeypatch.delenv("MLOPS_LAKEBASE", raising=False)
    assert model_training_set(NoClient(), {}) is None


def test_the_install_cell_quotes_the_git_folders_path_and_restarts_with_the_notebooks_dbutils(monkeypatch):
    """A Git folder named with a space installs as one path, and the restart uses the REPL's own dbutils (R20)."""
    from types import SimpleNamespace

    import IPython

    from utils.platform import runtime

    calls, restarts = [], []
    dbutils = SimpleNamespace(library=SimpleNamespace(restartPython=lambda: restarts.append(1)))
    shell = SimpleNamespace(run_line_magic=lambda magic, line: calls.append((magic, line)), user_ns={"dbutils": dbutils})
    monkeypatch.setattr(runtime, "is_databricks", lambda: True)
    monkeypatch.setattr(runtime, "REPO_ROOT", Path("/Workspace/Users/ada/My repo"))
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    monkeypatch.setattr(runtime.environment, "_dbutils", lambda: pytest.fail("the runtime module's dbutils was used"))
    runtime.install_on_databricks()
    assert calls == [("pip", "install --quiet -r '/Workspace/Users/ada/My repo/requirements-databricks.txt'"),
                     ("pip", "install --quiet --no-deps -e '/Workspace/Users/ada/My repo'")]
    assert restarts == [1]


def test_the_project_folder_is_found_where_a_bundle_job_imports_utils_from_its_wheel(tmp_path: Path) -> None:
    """A bundle job installs the project's wheel; after ``restartPython()`` ``utils`` comes from site-packages, which
    has no ``pyproject.toml``: the project is then the Git folder the notebook runs in (review, new problem 1)."""
    from utils.platform.environment import _repo_root

    site, repo = tmp_path / "site-packages", tmp_path / "repo"
    for folder in (site / "utils", repo / "utils", repo / "notebooks"):
        folder.mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert _repo_root(site, repo / "notebooks") == repo
    assert _repo_root(repo, tmp_path) == repo  # an editable or source checkout: the package's own parent
    assert _repo_root(site, tmp_path) == site  # nothing better: as before
