"""Java set-up mistakes get a message that says what is wrong and what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from utils import platform


def _fake_java(folder: Path, version: str) -> Path:
    (folder / "bin").mkdir(parents=True)
    java = folder / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-01-21' >&2\n")
    java.chmod(0o755)
    return java


def test_stale_java_home_falls_back_to_the_java_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = _fake_java(tmp_path / "jdk-17", "17.0.14")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "removed-jdk"))
    monkeypatch.setenv("PATH", str(good.parent))
    with pytest.warns(UserWarning, match=r"JAVA_HOME=.*removed-jdk has no bin/java; using the Java 17 on PATH") as caught:
        assert platform.java_version() == 17
    assert f"export JAVA_HOME={tmp_path / 'jdk-17'}" in str(caught[0].message)
    assert os.environ["JAVA_HOME"] == str(tmp_path / "jdk-17")  # what Spark's launcher will use


def test_stale_java_home_with_an_old_java_on_path_says_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old = _fake_java(tmp_path / "jdk-11", "11.0.2")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "removed-jdk"))
    monkeypatch.setenv("PATH", str(old.parent))
    with pytest.raises(platform.EnvironmentProblem, match="Java 11 is too old"):
        platform.java_version()


def test_no_java_anywhere_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(platform.EnvironmentProblem, match=r"Java not found \(no JAVA_HOME, no java on PATH\): install a JDK 17"):
        platform.java_version()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_checks_java_before_the_big_install() -> None:
    plan = subprocess.run(["make", "-n", "-W", "requirements.lock", ".venv/.installed"], cwd=platform.REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=True).stdout
    java_check, install = plan.find("java_version()"), plan.find("uv pip sync")
    assert 0 <= java_check < install, plan


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_uses_the_java_on_path_when_java_home_is_stale(tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "removed-jdk")}
    out = subprocess.run(["make", "-s", "java"], cwd=platform.REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert f"JAVA_HOME={tmp_path / 'removed-jdk'} has no bin/java; using the Java on PATH" in out.stdout
