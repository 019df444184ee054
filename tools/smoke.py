"""``make databricks-smoke``: the bundle on a real workspace, end to end, in one command, then torn down.

1. ``databricks bundle validate`` and ``databricks bundle deploy`` for the target (the Databricks CLI);
2. the lifecycle job at a small size (``jobs.run_now`` with the job parameter ``rows``): each task's result is
   printed as it ends, with the run's URL; the first failed task is printed with its error and the run is cancelled,
   so a failure is one line within a poll, not a wait for the rest;
3. teardown (unless ``--keep``): what the notebooks made outside the bundle (``utils.teardown``: endpoint, monitor,
   online store, model, experiment), then ``databricks bundle destroy`` (the jobs, the schema and its volumes).
Authentication is the CLI's and the SDK's own: ``--profile`` (a ``~/.databrickscfg`` profile), or
``DATABRICKS_HOST`` with a token. Exit status 0 when every task succeeded and everything was torn down, else 1;
2 when a step before the run failed (no CLI, not authenticated, the bundle refused).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CLI_INSTALL = "https://docs.databricks.com/aws/en/dev-tools/cli/install"


class SmokeError(RuntimeError):
    """A step before the run failed; the message is one line naming the step and what to do."""


def databricks_cli(args: list[str], profile: str = "") -> str:
    """Run ``databricks <args>`` (plus ``-p <profile>``) and return its standard output.

    Raises ``SmokeError`` naming the install page when the CLI is missing, and the command with the last line of
    its error output when it exits non-zero (an authentication problem, a bundle the workspace refuses).
    """
    command = ["databricks", *args, *(["-p", profile] if profile else [])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SmokeError(f"the Databricks CLI is not installed (`databricks` not on PATH): see {CLI_INSTALL}") from None
    if done.returncode:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or ["(no message)"])[-1]
        raise SmokeError(f"`{' '.join(command)}` failed (exit status {done.returncode}): {last.strip()}")
    return done.stdout


def deployed_jobs(summary: str) -> dict[str, dict[str, Any]]:
    """Job key -> ``{"id": ..., "parameters": {name: default}}`` from ``databricks bundle summary -o json``.

    Raises ``SmokeError`` when the summary names no ``lifecycle`` job with an id (the bundle was not deployed).
    """
    jobs = (json.loads(summary or "{}").get("resources") or {}).get("jobs") or {}
    found = {key: {"id": int(job["id"]), "parameters": {p["name"]: str(p.get("default", ""))
                                                       for p in job.get("parameters") or []}}
             for key, job in jobs.items() if str(job.get("id") or "").isdigit()}
    if "lifecycle" not in found:
        raise SmokeError("the deployed bundle has no lifecycle job with an id: `databricks bundle deploy` did not create it")
    return found


def run_lifecycle(client: Any, job_id: int, rows: int, poll_s: float = 10.0, timeout_s: float = 3 * 3600,
                  say: Callable[[str], None] = print) -> bool:
    """Start the lifecycle job with ``rows`` impressions and follow it; True when every task succeeded.

    Each task is one line as it ends (``develop: SUCCESS in 83 s``). A failed task is one line with its error
    (``jobs.get_run_output`` of the task run) and the run's URL, and the run is cancelled at once. A run still going
    after ``timeout_s`` seconds is cancelled with one line. ``client`` is a ``WorkspaceClient``.
    """
    run_id = client.jobs.run_now(job_id=job_id, job_parameters={"rows": str(rows)}).run_id
    started, said = time.monotonic(), set()
    while True:
        run = client.jobs.get_run(run_id)
        if not said:
            say(f"lifecycle run {run_id}: {run.run_page_url}")
        for task in run.tasks or []:
            result = task.state.result_state.value if task.state and task.state.result_state else None
            if result is None or task.task_key in said:
                continue
            said.add(task.task_key)
            seconds = max(0, ((task.end_time or 0) - (task.start_time or 0)) // 1000)
            if result == "SUCCESS":
                say(f"  {task.task_key}: SUCCESS in {seconds} s")
                continue
            error = client.jobs.get_run_output(task.run_id).error if task.run_id else None
            say(f"  {task.task_key}: {result}: {(error or task.state.state_message or 'no message').splitlines()[0]}"
                f" ({task.run_page_url or run.run_page_url})")
            if run.state and run.state.life_cycle_state and run.state.life_cycle_state.value != "TERMINATED":
                client.jobs.cancel_run(run_id)
            return False
        state = run.state.life_cycle_state.value if run.state and run.state.life_cycle_state else ""
        if state in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
            ok = bool(run.state.result_state) and run.state.result_state.value == "SUCCESS"
            if not ok:
                say(f"lifecycle run {run_id} ended {state}: {run.state.state_message or 'no message'}")
            return ok
        if time.monotonic() - started > timeout_s:
            client.jobs.cancel_run(run_id)
            say(f"lifecycle run {run_id} still running after {timeout_s:.0f} s: cancelled ({run.run_page_url})")
            return False
        time.sleep(poll_s)


def tear_down(client: Any, parameters: dict[str, str], cli: Callable[[list[str]], str], target: str) -> int:
    """Delete what the run made outside the bundle, then ``bundle destroy``; returns how many deletions failed.

    ``parameters`` are the lifecycle job's deployed defaults (catalog, schema, endpoint, experiment_name): the
    names the notebooks used. A bare experiment name is the notebooks' ``/Users/<you>/<catalog>.<schema>.<name>``.
    """
    from utils import teardown
    from utils.config import get_config

    names = {k: parameters[k] for k in ("catalog", "schema", "endpoint", "experiment_name") if parameters.get(k)}
    experiment = names.get("experiment_name", "")
    if experiment and not experiment.startswith("/"):
        names["experiment_name"] = (f"/Users/{client.current_user.me().user_name}/"
                                    f"{names.get('catalog')}.{names.get('schema')}.{experiment}")
    resources, problems = teardown.inventory(client, get_config(**names))
    for line in problems:
        print(line)
    failed = len(problems) + teardown.delete_all([r for r in resources if r.kind not in ("job", "schema", "volume")])
    cli(["bundle", "destroy", "-t", target, "--auto-approve"])
    print(f"bundle destroyed: target {target}")
    return failed


def main(argv: list[str] | None = None, cli: Callable[[list[str]], str] | None = None, client: Any = None) -> int:
    """The command line (``make databricks-smoke TARGET=serverless SMOKE_ROWS=6000``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tools.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="dev", help="the bundle target (databricks.yml), default dev")
    parser.add_argument("--rows", type=int, default=6000, help="impressions the lifecycle generates (default 6000)")
    parser.add_argument("--profile", default="", help="a ~/.databrickscfg profile (default: the CLI's default)")
    parser.add_argument("--keep", action="store_true", help="leave what the run made (no teardown)")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between looks at the run")
    args = parser.parse_args(argv)
    run_cli = cli or (lambda a: databricks_cli(a, args.profile))
    try:
        for step in ("validate", "deploy"):
            run_cli(["bundle", step, "-t", args.target])
            print(f"bundle {step}: target {args.target}")
        jobs = deployed_jobs(run_cli(["bundle", "summary", "-t", args.target, "-o", "json"]))
    except SmokeError as exc:
        print(f"smoke stopped: {exc}")
        return 2
    if client is None:
        from databricks.sdk import WorkspaceClient

        client = WorkspaceClient(profile=args.profile or None)
    ok = run_lifecycle(client, jobs["lifecycle"]["id"], args.rows, args.poll)
    print("lifecycle: every task succeeded" if ok else "lifecycle: FAILED (the line above says where)")
    if args.keep:
        print(f"--keep: nothing torn down; `databricks bundle destroy -t {args.target}` and `python -m utils.teardown --yes`"
              " (in a notebook there) remove it")
        return 0 if ok else 1
    try:
        failed = tear_down(client, jobs["lifecycle"]["parameters"], run_cli, args.target)
    except SmokeError as exc:
        print(f"teardown stopped: {exc}")
        return 1
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
