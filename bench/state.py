"""Isolated lifecycle state for the scoring benchmarks: a fresh state dir, then ``catch_up("05")``.

``isolate()`` must run before any ``utils`` module reads its configuration: it points
``MLOPS_STATE_DIR`` and ``MLOPS_RAW_DIR`` at a fresh folder under the git-ignored
``bench/results/tmp/`` (or at ``--state-dir``, to reuse the state of an earlier run) and pins
``OMP_NUM_THREADS=1`` so in-process and worker-side predictions get the same single thread.
``champion()`` then builds the raw data, silver and feature tables, a registered champion and
the online store copies, and returns the champion's name, version and URI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT

SCRATCH = REPO_ROOT / "bench" / "results" / "tmp"  # git-ignored


def add_state_args(parser: argparse.ArgumentParser, data_rows: int = 20_000) -> None:
    """The options every scoring benchmark shares: size of the generated data, and where its state lives."""
    parser.add_argument("--data-rows", type=int, default=data_rows,
                        help="impressions generated for catch_up (the training set the model is built from)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--state-dir", type=Path,
                        help="reuse this state folder (catch_up skips what exists); default: a fresh temp folder")
    parser.add_argument("--keep-state", action="store_true", help="keep the fresh temp state folder afterwards")
    parser.add_argument("--no-record", action="store_true", help="print the table only, do not append it")


def isolate(args: argparse.Namespace, prefix: str) -> Path:
    """Point the lifecycle at an isolated state folder (before ``utils`` reads any config); returns it."""
    if args.state_dir is not None:
        state = args.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
        args.keep_state = True
    else:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        state = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))
    os.environ["MLOPS_STATE_DIR"] = str(state)
    os.environ["MLOPS_RAW_DIR"] = str(state / "raw")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the state's own SQLite store, nothing else
        os.environ.pop(var, None)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return state


def cleanup(args: argparse.Namespace, state: Path) -> None:
    """Remove the fresh state folder unless asked to keep it."""
    if args.keep_state:
        print(f"state kept in {state}")
    else:
        shutil.rmtree(state, ignore_errors=True)


@dataclass(frozen=True)
class Champion:
    """The registered champion the benchmark scores with."""

    name: str
    version: str
    uri: str
    setup_s: float


def champion(args: argparse.Namespace, online: bool = True) -> Champion:
    """``catch_up("05")`` in the isolated state (plus the online store copies); returns the champion."""
    from utils import registry
    from utils.catchup import catch_up
    from utils.config import get_config
    from utils.online_features import ensure_online_features
    from utils.platform import configure_mlflow

    cfg = get_config()
    t0 = time.perf_counter()
    ran = catch_up("05", args.data_rows, args.seed)
    configure_mlflow()
    if online:
        ensure_online_features(cfg)
    setup_s = time.perf_counter() - t0
    mv = registry.get_alias_version(cfg.model_name, cfg.champion_alias)
    if mv is None:
        raise RuntimeError(f"catch_up registered no {cfg.champion_alias} of {cfg.model_name}")
    print(f"catch_up('05', {args.data_rows:,}, {args.seed}) ran {ran or 'nothing'} in {setup_s:.0f} s; "
          f"champion {cfg.model_name} v{mv.version}", flush=True)
    return Champion(cfg.model_name, str(mv.version), f"models:/{cfg.model_name}/{mv.version}", setup_s)
