"""The one config object: every name derives from a few roots, environment overrides apply."""

from __future__ import annotations

import pytest

from utils.config import Config, get_config
from utils.project import NAME


def test_defaults_build_three_level_names() -> None:
    cfg = Config()
    assert cfg.table("silver_orders") == f"{NAME}.mlops.silver_orders"
    assert cfg.model_name == f"{NAME}.mlops.{NAME}_recommender"


def test_environment_renames_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CATALOG", "acme")
    monkeypatch.setenv("MLOPS_SCHEMA", "recs")
    monkeypatch.setenv("MLOPS_MODEL_BASE_NAME", "acme_model")
    cfg = get_config()
    assert cfg.table("x") == "acme.recs.x"
    assert cfg.model_name == "acme.recs.acme_model"


def test_thresholds_override_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_THRESHOLD_PSI", "0.3")
    monkeypatch.setenv("MLOPS_SEED", "7")
    cfg = get_config()
    assert cfg.thresholds.psi == pytest.approx(0.3)
    assert cfg.seed == 7


def test_explicit_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CATALOG", "acme")
    assert get_config(catalog="other").catalog == "other"


@pytest.mark.parametrize(("variable", "raw"), [("MLOPS_SEED", "seven"), ("MLOPS_SEED", "7.5"),
                                               ("MLOPS_THRESHOLD_PSI", "high"), ("MLOPS_THRESHOLD_GATE_MIN_AUC", "nan"),
                                               ("MLOPS_THRESHOLD_GATE_MIN_AUC", "1.5"), ("MLOPS_THRESHOLD_PSI", "-1"),
                                               ("MLOPS_THRESHOLD_KS_PVALUE", "5"), ("MLOPS_SEED", "-3"),
                                               ("MLOPS_CATALOG", "bad name"), ("MLOPS_SCHEMA", "dev-ml"),
                                               ("MLOPS_SCHEMA", "a.b")])
def test_bad_environment_override_is_refused_naming_field_value_and_variable(monkeypatch: pytest.MonkeyPatch,
                                                                             variable: str, raw: str) -> None:
    from utils.parameters import ParameterError

    monkeypatch.setenv(variable, raw)
    with pytest.raises(ParameterError) as err:
        get_config()
    field = variable.removeprefix("MLOPS_THRESHOLD_").removeprefix("MLOPS_").lower()
    assert f"'{field}'" in str(err.value) and repr(raw) in str(err.value) and variable in str(err.value)


def test_whole_number_and_boolean_words_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SEED", "7.0")
    monkeypatch.setenv("MLOPS_THRESHOLD_PSI", "1")
    cfg = get_config()
    assert cfg.seed == 7 and type(cfg.seed) is int
    assert cfg.thresholds.psi == 1.0 and type(cfg.thresholds.psi) is float


def test_a_misspelled_variable_is_named_with_the_closest_known_one(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from utils import config

    monkeypatch.setattr(config, "_WARNED", set())
    monkeypatch.setenv("MLOPS_ROW", "5000")
    monkeypatch.setenv("MLOPS_TRESHOLD_PSI", "0.3")
    monkeypatch.setenv("MLOPS_ZZZ", "1")
    get_config()
    get_config()  # once per process, not at every call
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "warning: MLOPS_ROW is not a variable this project reads, so it has no effect; did you mean MLOPS_ROWS?",
        ("warning: MLOPS_TRESHOLD_PSI is not a variable this project reads, so it has no effect; "
         "did you mean MLOPS_THRESHOLD_PSI?"),
        ("warning: MLOPS_ZZZ is not a variable this project reads, so it has no effect; "
         "utils.config.known_variables() lists the ones it reads"),
    ]


@pytest.mark.parametrize(("variable", "meant"), [
    ("MLOPS_ROW", "MLOPS_ROWS"), ("MLOPS_SEEDS", "MLOPS_SEED"), ("MLOPS_TRESHOLD_PSI", "MLOPS_THRESHOLD_PSI"),
    ("MLOPS_STATEDIR", "MLOPS_STATE_DIR"),
    ("MLOPS_ZZZ", None), ("MLOPS_WIDGET_COLOUR", None),  # close to nothing, or only sharing words: warned, not refused
])
def test_only_a_near_miss_of_a_known_variable_counts_as_misspelled(variable: str, meant: str | None) -> None:
    from utils.config import misspelled_variables

    assert misspelled_variables({variable: "1", "MLOPS_ROWS": "5000", "PATH": "/bin"}) == ({variable: meant} if meant else {})


def test_known_variables_warn_nothing() -> None:
    from utils.config import known_variables, unknown_variables

    environ = dict.fromkeys(known_variables(), "1")
    assert "MLOPS_ROWS" in environ and "MLOPS_CATALOG" in environ and "MLOPS_THRESHOLD_PSI" in environ
    assert unknown_variables({**environ, "PATH": "/bin"}) == []
    assert unknown_variables({"MLOPS_SOMEPARAM": "1"}, also_known=["MLOPS_SOMEPARAM"]) == []


def test_every_variable_the_code_reads_is_known() -> None:
    """The list in utils/config.py is the one place: a variable read anywhere else but missing there fails here."""
    import re

    from utils.config import known_variables
    from utils.platform import REPO_ROOT

    files = [*REPO_ROOT.glob("utils/**/*.py"), *REPO_ROOT.glob("bench/*.py"), *REPO_ROOT.glob("notebooks/*.ipynb"),
             *REPO_ROOT.glob("resources/*.yml"), *REPO_ROOT.glob("tests/browser/*.py"),
             REPO_ROOT / "Makefile", REPO_ROOT / "README.md", REPO_ROOT / "databricks.yml"]
    # full names only: MLOPS_<FIELD>, MLOPS_THRESHOLD_<NAME>, f"MLOPS_{...}" are patterns, not variables
    pattern = re.compile(r"\bMLOPS_[A-Z0-9_]*[A-Z0-9]\b(?![<{])")
    found = {m for f in files for m in pattern.findall(f.read_text(encoding="utf-8"))}
    assert {"MLOPS_ROWS", "MLOPS_STATE_DIR", "MLOPS_SHUFFLE_PARTITIONS"} <= found
    assert sorted(found - set(known_variables())) == []


def test_the_notebook_parameters_are_the_ones_the_notebooks_declare() -> None:
    from tools.runner import declared_parameters, lifecycle_notebooks
    from utils.config import NOTEBOOK_PARAMETERS

    assert sorted(NOTEBOOK_PARAMETERS) == sorted(declared_parameters(lifecycle_notebooks()))


def test_a_bad_override_gives_a_valid_example_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from utils.parameters import ParameterError

    monkeypatch.setenv("MLOPS_SEED", "seven")
    with pytest.raises(ParameterError) as err:
        get_config()
    assert "e.g. MLOPS_SEED=42" in str(err.value) and "a whole number" in str(err.value) and "\n" not in str(err.value)


_LAKEBASE_NAME = r"[a-z][a-z0-9-]{0,62}"  # 1-63 characters, letters (lower case), digits and hyphens


@pytest.mark.parametrize(("catalog", "schema"), [(NAME, "mlops"), ("workshop", "ada_lovelace"), ("Acme.Dev", "9recs"),
                                                 ("a" * 40, "attendee_" + "x" * 40), ("_", "__")])
def test_online_store_name_is_a_valid_lakebase_name(catalog: str, schema: str) -> None:
    import re

    name = Config(catalog=catalog, schema=schema).online_store_name
    assert re.fullmatch(_LAKEBASE_NAME, name) and not name.endswith("-") and "--" not in name, name


def test_each_schema_gets_its_own_online_store(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config().online_store_name == f"{NAME}-online-{NAME}-mlops".replace("_", "-")
    names = {Config(catalog="workshop", schema=s).online_store_name for s in ("ada", "grace", "ada1", "ada2")}
    assert len(names) == 4
    long_a, long_b = (Config(catalog="workshop", schema="attendee_" + "x" * 60 + tail).online_store_name for tail in "ab")
    assert long_a != long_b and len(long_a) == len(long_b) == 63
    monkeypatch.setenv("MLOPS_LAKEBASE_STORE", "team-store")
    assert get_config().online_store_name == "team-store"
    from utils.config import known_variables

    assert "MLOPS_LAKEBASE_STORE" in known_variables()


def test_every_threshold_has_a_range() -> None:
    """A new threshold gets its range in utils.parameters.BOUNDS, so an impossible value is refused up front."""
    from dataclasses import fields

    from utils.config import Thresholds
    from utils.parameters import BOUNDS

    assert {f.name for f in fields(Thresholds)} <= set(BOUNDS)
