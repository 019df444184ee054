"""Compile requirements-databricks.in into requirements-databricks.txt without changing the runtimes.

`make requirements-databricks` runs this. The input is resolved for Python 3.12 with Databricks
Runtime 17.3 LTS ML's pre-installed packages as constraints, so whatever the runtime already has
keeps its version. The only exceptions are the packages requirements-databricks.in pins at a
version the runtime does not have (the project's mlflow, databricks-sdk, ...): those replace the
runtime's, on purpose and in plain sight.

Packages every target runtime already has (DBR 17.3 LTS ML and serverless environment 4) are left
out of the output, so `%pip install` keeps each runtime's own copy. The result is then resolved a
second time against the serverless environment's packages, to fail here rather than on a workspace
if it would change one of those.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.12"
RUNTIME = ROOT / "constraints" / "dbr-17.3-lts-ml.txt"
OTHER_RUNTIMES = [ROOT / "constraints" / "serverless-env-4.txt"]
SOURCE = ROOT / "requirements-databricks.in"
OUTPUT = ROOT / "requirements-databricks.txt"


def pinned(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a constraints or requirements file."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line.strip())
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a ``.in`` file (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def replaced(reqs: list[Requirement], runtime: dict[str, str]) -> set[str]:
    """Packages the input pins away from the runtime's version: the deliberate replacements."""
    return {
        canonicalize_name(r.name)
        for r in reqs
        if canonicalize_name(r.name) in runtime
        and not r.specifier.contains(runtime[canonicalize_name(r.name)], prereleases=True)
    }


def _compile(uv: str, source: Path, constraints: dict[str, str], out: Path, extra: list[str], shown: Path) -> None:
    """``uv pip compile`` of ``source`` with ``constraints``, which the output's notes call ``shown``."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as c:
        c.write("".join(f"{name}=={version}\n" for name, version in sorted(constraints.items())))
        c.flush()
        cmd = [uv, "pip", "compile", "--quiet", str(source), "--python-version", PYTHON_VERSION,
               "--python-platform", "x86_64-unknown-linux-gnu", "-c", c.name, "-o", str(out), *extra]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"{source.name} does not resolve with {shown.name} held:\n{result.stderr}")
        out.write_text(out.read_text().replace(c.name, shown.relative_to(ROOT).as_posix()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", default="uv", help="uv executable")
    args = parser.parse_args()

    reqs = requirements(SOURCE)
    runtime = pinned(RUNTIME)
    others = [pinned(p) for p in OTHER_RUNTIMES]
    swap = replaced(reqs, runtime)
    everywhere = set(runtime).intersection(*others) - swap
    _compile(args.uv, SOURCE, {k: v for k, v in runtime.items() if k not in swap}, OUTPUT, [
        "--custom-compile-command", f"make requirements-databricks  (uv pip compile --python-version {PYTHON_VERSION})",
        *[arg for name in sorted(everywhere) for arg in ("--no-emit-package", name)],
    ], RUNTIME)
    # The same output, with each other runtime's packages held: fails if it would change one of them.
    for path, other in zip(OTHER_RUNTIMES, others):
        with tempfile.TemporaryDirectory() as tmp:
            _compile(args.uv, OUTPUT, {k: v for k, v in other.items() if k not in replaced(reqs, other)},
                     Path(tmp) / path.name, [], path)
    print(f"{OUTPUT.name}: {len(pinned(OUTPUT))} packages; replaces the runtime's {', '.join(sorted(swap))}")


if __name__ == "__main__":
    main()
