"""The JVM side of the local lakehouse: Delta Lake's Spark jars and the catalog alias, fetched once.

``python -m utils.local.jvm install`` (run by ``make install``) resolves Delta Lake for the installed
pyspark from Maven Central with Spark's own Ivy resolver into ``.jars/`` (git-ignored), and compiles
``SessionCatalogAlias.java`` against the pyspark jars. After that nothing is fetched at run time:
:func:`spark_conf` hands the session local jar paths, so a notebook starts offline.

The Delta artifact carries the Spark version in its name for Spark 4.1 (``delta-spark_4.1_2.13``);
its version is the installed ``delta-spark`` wheel's, as ``delta.configure_spark_with_delta_pip`` asks.
This module imports nothing from ``utils`` (``utils.platform`` imports it).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCALA = "2.13"
ALIAS_CLASS = "mlops.local.SessionCatalogAlias"
_MANIFEST = "manifest.json"
_INSTALL_HINT = "run `make install` (or `.venv/bin/python -m utils.local.jvm install`) once, with network access"

__all__ = ["MissingJars", "delta_coordinate", "install", "jars_dir", "pyspark_home", "session_jars", "spark_conf"]


class MissingJars(RuntimeError):
    """The Delta Lake jars or the catalog alias are not installed; the message says what to run."""


def jars_dir() -> Path:
    """Folder of the resolved jars: ``.jars/`` in the project, or ``MLOPS_JARS_DIR``."""
    return Path(os.environ.get("MLOPS_JARS_DIR", REPO_ROOT / ".jars")).resolve()


def delta_coordinate() -> str:
    """Maven coordinate of Delta Lake for the installed pyspark and delta-spark, e.g.
    ``io.delta:delta-spark_4.1_2.13:4.4.0``; raises ``MissingJars`` if either wheel is absent."""
    try:
        spark_version = md.version("pyspark")
        delta_version = md.version("delta-spark")
    except md.PackageNotFoundError as exc:
        raise MissingJars(f"{exc.name} is not installed: run `make install`") from exc
    major_minor = ".".join(spark_version.split(".")[:2])
    return f"io.delta:delta-spark_{major_minor}_{SCALA}:{delta_version}"


def pyspark_home() -> Path:
    """The installed pyspark's folder (its ``bin/spark-submit`` and ``jars/``)."""
    import pyspark

    return Path(pyspark.__file__).parent


def _pyspark_jars() -> Path:
    return pyspark_home() / "jars"


def _compile_alias(dest: Path) -> Path:
    """Compile the catalog alias against pyspark's jars into ``dest/mlops-local-catalog.jar``."""
    javac = shutil.which("javac", path=str(Path(os.environ["JAVA_HOME"]) / "bin")) if os.environ.get("JAVA_HOME") \
        else None
    javac = javac or shutil.which("javac")
    if not javac:
        raise MissingJars(
            "javac not found: install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`, "
            "`brew install openjdk@17`) or `conda env create -f environment.yml`"
        )
    source = Path(__file__).with_name("SessionCatalogAlias.java")
    with tempfile.TemporaryDirectory() as build:
        proc = subprocess.run(
            [javac, "-nowarn", "--release", "17", "-d", build, "-cp", str(_pyspark_jars() / "*"), str(source)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if proc.returncode:
            raise MissingJars(f"compiling {source.name} failed:\n{proc.stderr.strip()}")
        target = dest / "mlops-local-catalog.jar"
        with zipfile.ZipFile(target, "w") as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
            for cls in Path(build).rglob("*.class"):
                jar.write(cls, cls.relative_to(build).as_posix())
    return target


def _artifact(jar_name: str, ivy: bool = False) -> str:
    """``jackson-core`` for Ivy's ``com.fasterxml.jackson.core_jackson-core-2.13.5.jar`` (``group_artifact-version``,
    ``ivy=True``) or pyspark's ``jackson-core-2.21.2.jar``."""
    stem = jar_name.split("_", 1)[1] if ivy and "_" in jar_name else jar_name
    match = re.match(r"^(.*?)-\d[\w.\-]*\.jar$", stem)
    return match.group(1) if match else stem


def _resolve_with_ivy(coordinate: str, ivy_home: Path) -> list[Path]:
    """Resolve ``coordinate`` and its dependencies with Spark's own Ivy (``spark.jars.packages``).

    Returns the resolved jars less those pyspark already ships (any version: Spark's own classes
    come first on the classpath anyway), and drops Ivy's download cache.
    """
    code = (
        "import sys\n"
        "from pyspark.sql import SparkSession\n"
        "s = (SparkSession.builder.master('local[1]').appName('resolve-jars')\n"
        "     .config('spark.jars.packages', sys.argv[1]).config('spark.jars.ivy', sys.argv[2])\n"
        "     .config('spark.ui.enabled', 'false').getOrCreate())\n"
        "s.stop()\n"
    )
    shutil.rmtree(ivy_home / "jars", ignore_errors=True)  # Ivy only adds: jars of an older Delta would stay
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.run([sys.executable, "-c", code, coordinate, str(ivy_home)],
                          capture_output=True, text=True, timeout=1200, env=env, check=False)
    if proc.returncode:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise MissingJars(f"could not resolve {coordinate} from Maven Central:\n{tail}")
    shipped = {_artifact(j.name) for j in _pyspark_jars().glob("*.jar")}
    shutil.rmtree(ivy_home / "cache", ignore_errors=True)
    jars = sorted((ivy_home / "jars").glob("*.jar"))
    for jar in jars:
        if _artifact(jar.name, ivy=True) in shipped:
            jar.unlink()
    return [j for j in jars if j.exists()]


def _source_digest() -> str:
    """Digest of what the installed jars are built from (this module and the catalog alias source)."""
    import hashlib

    digest = hashlib.sha256()
    for path in (Path(__file__), Path(__file__).with_name("SessionCatalogAlias.java")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def install(force: bool = False) -> dict:
    """Fetch Delta Lake's jars and build the catalog alias into :func:`jars_dir`, once.

    Skips the work (nothing is fetched) when the manifest already names the same Delta coordinate
    and source digest and every jar is there, unless ``force``. Returns the manifest (coordinate, jar file names, seconds taken, total MiB).
    Raises ``MissingJars`` when Maven Central cannot be reached or javac is missing.
    """
    dest = jars_dir()
    coordinate = delta_coordinate()
    manifest_path = dest / _MANIFEST
    if not force and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("coordinate") == coordinate and manifest.get("source") == _source_digest() \
                and all((dest / j).exists() for j in manifest["jars"]):
            return manifest
    started = time.perf_counter()
    dest.mkdir(parents=True, exist_ok=True)
    jars = _resolve_with_ivy(coordinate, dest / "ivy")
    alias = _compile_alias(dest)
    files = [j.relative_to(dest).as_posix() for j in [*jars, alias]]
    manifest = {
        "coordinate": coordinate,
        "source": _source_digest(),
        "jars": files,
        "seconds": round(time.perf_counter() - started, 1),
        "mib": round(sum((dest / f).stat().st_size for f in files) / 2**20, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def session_jars() -> list[str]:
    """Absolute paths of the installed jars; ``MissingJars`` (one line: what to run) if any is missing."""
    dest = jars_dir()
    manifest_path = dest / _MANIFEST
    if not manifest_path.exists():
        raise MissingJars(f"Delta Lake jars are not installed in {dest}: {_INSTALL_HINT}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("coordinate") != delta_coordinate():
        raise MissingJars(f"the jars in {dest} are for {manifest.get('coordinate')}, "
                          f"not the installed {delta_coordinate()}: {_INSTALL_HINT}")
    paths = [dest / j for j in manifest["jars"]]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise MissingJars(f"jars missing from {dest} ({', '.join(missing[:3])}): {_INSTALL_HINT}")
    return [str(p) for p in paths]


def spark_conf(catalogs: list[str]) -> dict[str, str]:
    """Session settings for Delta Lake from local jars, with ``catalogs`` answering three-level names.

    Delta's SQL extension and ``DeltaCatalog`` as the session catalog (as on Databricks), Delta as
    the default table format, and one :class:`SessionCatalogAlias` per catalog name.
    """
    conf = {
        "spark.jars": ",".join(session_jars()),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.sources.default": "delta",
    }
    for name in catalogs:
        conf[f"spark.sql.catalog.{name}"] = ALIAS_CLASS
    return conf


def _main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("install", "check"):
        print("usage: python -m utils.local.jvm install [--force] | check", file=sys.stderr)
        return 2
    try:
        if argv[0] == "install":
            manifest = install(force="--force" in argv)
            print(f"Delta Lake jars: {manifest['coordinate']}, {len(manifest['jars'])} jars, "
                  f"{manifest['mib']} MiB in {jars_dir()}")
        else:
            print("\n".join(session_jars()))
    except MissingJars as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
