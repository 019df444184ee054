"""A local stand-in for the Databricks workspace REST API, for tests that run the real ``databricks-sdk``.

No workspace is reachable from CI, so tests point the real ``databricks.sdk.WorkspaceClient`` (its
authentication, URL building, JSON bodies, error mapping and waiting) at this small HTTP server. It
checks the bearer token, records every call, answers 404 for routes it does not know, and answers
the routes the project calls with the shapes of the SDK's own dataclasses (``databricks.sdk.service``):

* Model Serving: ``GET``/``POST /api/2.0/serving-endpoints``, ``PUT .../{name}/config``, ``PUT .../{name}/ai-gateway``
  (the AI Gateway inference table) and scoring at
  ``/serving-endpoints/{name}/served-models/{served}/invocations`` (``serving.ServingEndpointDetailed``);
* the current user: ``GET /api/2.0/preview/scim/v2/Me`` (``iam.User``, SCIM field names);
* Jobs 2.2: ``POST /jobs/run-now`` (``jobs.RunNowResponse``), ``POST /jobs/runs/submit``
  (``jobs.SubmitRunResponse``), ``GET /jobs/runs/get`` (``jobs.Run``), ``GET /jobs/runs/list`` (``jobs.BaseRun``
  pages, newest first), ``GET /jobs/runs/get-output`` (``jobs.RunOutput``, for a task run only, as the service
  refuses a multi-task run's id);
* Files: ``PUT /api/2.0/fs/files{path}`` (the single-shot upload the SDK uses below 50 MB);
* Lakebase online stores (``FeatureEngineeringClient``'s ``*_online_store`` go through them):
  ``POST``/``GET /api/2.0/feature-store/online-stores`` and ``GET``/``DELETE .../{name}`` (``ml.OnlineStore``,
  ``ml.ListOnlineStoresResponse``). A created store answers ``STARTING`` for ``starting_polls`` GETs, then
  ``AVAILABLE``; an unknown name is 404 ``RESOURCE_DOES_NOT_EXIST``, which the SDK raises as ``NotFound``;
* Unity Catalog objects: ``GET /api/2.1/unity-catalog/tables/{name}``, ``.../schemas/{name}`` and ``.../catalogs/{name}``
  (what ``tables`` / ``schemas`` / ``catalogs`` hold), workspace folders (``POST /api/2.0/workspace/mkdirs``) and data profiling
  (``GET``/``POST /api/data-quality/v1/monitors``, ``POST .../{type}/{id}/refreshes``: ``dataquality.Monitor``);
* Unity Catalog models through MLflow's own ``databricks-uc`` registry client:
  ``POST /api/2.0/mlflow/unity-catalog/registered-models/create``, ``GET .../get`` and ``PATCH .../update`` (the
  ``deployment_job_id`` that links an MLflow 3 deployment job).
* What a teardown lists and deletes (``utils.teardown``): ``DELETE`` of a serving endpoint and of a data-profiling
  monitor; Jobs 2.2 ``GET /jobs/list`` (``jobs.BaseJob`` pages, settings without tasks), ``GET /jobs/get`` and
  ``POST /jobs/delete`` (an unknown id is 400 ``INVALID_PARAMETER_VALUE`` "Job <id> does not exist.", as the Jobs
  API answers); Unity Catalog's own model routes ``GET``/``DELETE /api/2.1/unity-catalog/models/{name}``,
  ``GET .../versions`` and ``DELETE .../versions/{version}`` (``catalog.RegisteredModelInfo`` /
  ``catalog.ModelVersionInfo``, over the same models MLflow's client makes; deleting a model deletes its versions);
  MLflow experiments ``GET /api/2.0/mlflow/experiments/get-by-name`` (a deleted experiment is still found, with
  ``lifecycle_stage`` ``deleted``) and ``POST .../delete``; volumes ``GET``/``DELETE /api/2.1/unity-catalog/volumes/{name}``;
  ``DELETE`` of a schema (refused while it holds tables, volumes or models, unless ``force=true``). A missing object is
  404 ``RESOURCE_DOES_NOT_EXIST``. :meth:`StandInWorkspace.deny` refuses one kind of call on one object with 403
  ``PERMISSION_DENIED`` while other calls on it still answer (a user who may see an endpoint but not delete it).

Preview features can be switched off, one by one, as in a workspace where they are not enabled (a preview
nobody turned on, a region or edition without them): :meth:`StandInWorkspace.turn_off` makes the feature's calls
answer ``{"error_code": "FEATURE_DISABLED", "message": ...}``, the shape Databricks' REST API gives for a feature
that is not enabled (see :data:`PREVIEWS` for which calls each feature covers). The HTTP status of that answer
differs between Databricks services (400, 403 and 404 are all seen in public clients of the API), so it is the
test's choice, and code that reads the answer must go by its error code, not its status. That a create request
carrying an AI Gateway inference table is refused as a whole is what the review of round 3 (R6) expects of a
workspace without AI Gateway inference tables; no real workspace has been seen to answer either way.

A submitted run does not execute anything: its task is handed to ``task_runner`` (a test supplies
it), which returns the result state, the task's printed output and its error. Tasks run in the order
given; once one fails, the tasks after it are not run (``UPSTREAM_FAILED``), and the run ends with the
first failure's state. What the stand-in cannot show is how a real workspace installs the environment and
runs the task.

Registration starts the linked deployment job, as Unity Catalog does: :meth:`StandInWorkspace.model_version_created`
(called for every version MLflow's client creates while :func:`registrations_reported` is open; a local MLflow
registry holds the versions) starts a run of the job whose id the registered model carries
(``deployment_job_id``) with the job parameters ``model_name`` and ``model_version``, when ``jobs`` holds
that job's settings. The run goes on in a thread of its own, whether or not anyone polls, and each task
reaches ``task_runner`` with its ``{{job.parameters.<name>}}`` references resolved.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, Any]
Route = Callable[["StandInWorkspace", re.Match, dict[str, str], Any], Answer]


def error(status: int, code: str, message: str) -> Answer:
    """An error answer the way the REST API gives it: ``{"error_code", "message"}``."""
    return status, {"error_code": code, "message": message}


def _wants_inference_table(method: str, path: str, body: Any) -> bool:
    """A serving-endpoint create or AI Gateway PUT that turns an AI Gateway inference table on."""
    if not isinstance(body, dict):
        return False
    if method == "POST" and path == "/api/2.0/serving-endpoints":
        body = body.get("ai_gateway") or {}
    elif not (method == "PUT" and re.fullmatch(r"/api/2\.0/serving-endpoints/[^/]+/ai-gateway", path)):
        return False
    return bool((body.get("inference_table_config") or {}).get("enabled"))


PREVIEWS: dict[str, tuple[Callable[[str, str, Any], bool], str]] = {
    "ai_gateway": (_wants_inference_table,
                   "AI Gateway inference tables are not enabled for this workspace."),
    "data_profiling": (lambda method, path, body: path.startswith("/api/data-quality/"),
                       "Data profiling is not enabled for this workspace."),
    "lakebase": (lambda method, path, body: path.startswith(("/api/2.0/feature-store/online-stores", "/api/2.0/database/")),
                 "Lakebase is not enabled for this workspace."),
}
"""Each preview feature :meth:`StandInWorkspace.turn_off` can switch off: which calls it covers, and the message."""


@dataclass
class TaskResult:
    """What a submitted task did: ``result_state`` (SUCCESS, FAILED, ...), printed output, error and trace."""

    result_state: str = "SUCCESS"
    logs: str = ""
    error: str | None = None
    error_trace: str | None = None


@dataclass
class StandInWorkspace:
    """Workspace state kept in memory, the routes that answer from it, and every call made."""

    token: str = field(default_factory=lambda: secrets.token_hex(16))  # made up per run: only this one is accepted
    user_name: str = "ada@example.com"
    host: str = ""
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    gateways: dict[str, dict[str, Any]] = field(default_factory=dict)  # endpoint name -> serving.AiGatewayConfig JSON
    cold_invocations: int = 0  # scoring calls answered 503 (a container waking up) before the model answers
    in_progress_polls: list[int] = field(default_factory=list)  # serving GETs left that report an update in progress
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)  # job id -> settings (run-now refuses other ids)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # run id -> the run as runs/get answers it
    outputs: dict[int, dict[str, Any]] = field(default_factory=dict)  # task run id -> runs/get-output's answer
    files: dict[str, bytes] = field(default_factory=dict)
    online_stores: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> ml.OnlineStore's JSON, + _polls
    registered_models: dict[str, dict[str, Any]] = field(default_factory=dict)  # UC model name -> RegisteredModel JSON
    tables: dict[str, str] = field(default_factory=dict)  # UC table full name -> table_id (tables.get answers these)
    schemas: dict[str, str] = field(default_factory=dict)  # UC schema full name -> schema_id
    folders: set[str] = field(default_factory=set)  # workspace folders made by workspace.mkdirs
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)  # table_id -> dataquality.Monitor JSON
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    starting_polls: int = 1  # GETs of a new online store that answer STARTING before it is AVAILABLE
    store_capacities: tuple[str, ...] = ("CU_1", "CU_2", "CU_4", "CU_8")  # what create accepts (ml.OnlineStore.capacity)
    running_polls: int = 1  # runs/get answers RUNNING this many times before the run terminates
    task_runner: Callable[[dict[str, Any], StandInWorkspace], TaskResult] = lambda task, ws: TaskResult()
    refusals: dict[str, Answer] = field(default_factory=dict)  # path regex -> the error every matching call gets
    previews_off: dict[str, int] = field(default_factory=dict)  # preview feature (PREVIEWS) -> status of its refusal
    catalogs: set[str] = field(default_factory=set)  # UC catalogs that exist (catalogs.get answers these)
    model_versions: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # UC model -> version -> JSON
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)  # experiment id -> mlflow Experiment JSON
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)  # UC volume full name -> catalog.VolumeInfo JSON
    denials: dict[tuple[str, str], Answer] = field(default_factory=dict)  # (method, path regex) -> 403 answer
    cancelled: list[int] = field(default_factory=list)  # run ids jobs/runs/cancel ended
    _next_id: int = 100
    _threads: list[threading.Thread] = field(default_factory=list)  # runs started by registration

    # ------------------------------------------------------------ helpers for tests

    def writes(self, prefix: str = "/api/") -> list[tuple[str, str, Any]]:
        """The calls under ``prefix`` that change something (POST, PUT, DELETE), in order."""
        return [c for c in self.calls if c[0] in ("POST", "PUT", "PATCH", "DELETE") and c[1].startswith(prefix)]

    def refuse(self, path_pattern: str, status: int, code: str, message: str) -> None:
        """Make every call whose path matches ``path_pattern`` fail with ``status`` and ``code``."""
        self.refusals[path_pattern] = error(status, code, message)

    def deny(self, method: str, path_pattern: str, message: str) -> None:
        """Refuse ``method`` calls whose path matches ``path_pattern`` with 403 ``PERMISSION_DENIED`` and ``message``,
        as a workspace refuses a user who may see an object but not change it; other calls still answer."""
        self.denials[(method, path_pattern)] = error(403, "PERMISSION_DENIED", message)

    def denial(self, method: str, path: str) -> Answer | None:
        """The answer :meth:`deny` set for this call, else None."""
        return next((a for (verb, pattern), a in self.denials.items() if verb == method and re.search(pattern, path)), None)

    def turn_off(self, feature: str, status: int = 400) -> None:
        """Answer ``feature``'s calls (a key of :data:`PREVIEWS`) as a workspace where it is not enabled: HTTP ``status``
        with ``FEATURE_DISABLED`` and the feature's message."""
        if feature not in PREVIEWS:
            raise ValueError(f"unknown preview feature {feature!r}: one of {sorted(PREVIEWS)}")
        self.previews_off[feature] = status

    def preview_refusal(self, method: str, path: str, body: Any) -> Answer | None:
        """The answer to a call of a preview feature that is turned off, else None."""
        for feature, status in self.previews_off.items():
            covers, message = PREVIEWS[feature]
            if covers(method, path, body):
                return error(status, "FEATURE_DISABLED", message)
        return None

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ------------------------------------------------------------ the current user

    def me(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        return 200, {"id": "4711", "userName": self.user_name, "displayName": "Ada Lovelace", "active": True,
                     "emails": [{"value": self.user_name, "primary": True, "type": "work"}],
                     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}

    # ------------------------------------------------------------ jobs

    def run_now(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        job_id = body.get("job_id")
        if job_id not in self.jobs:
            # What the Jobs API answers for an id it does not know (HTTP 400, INVALID_PARAMETER_VALUE).
            return error(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        run_id = self.new_id()
        job, parameters = self.jobs[job_id], body.get("job_parameters") or {}
        self.runs[run_id] = self._run(run_id, job_id, job.get("name", f"job {job_id}"),
                                      self._resolved_tasks(job, parameters), parameters, "JOB_RUN")
        return 200, {"run_id": run_id, "number_in_job": run_id}

    @staticmethod
    def _resolved_tasks(job: dict[str, Any], parameters: dict[str, str]) -> list[dict[str, Any]]:
        """The job's tasks as its run gets them: a wheel task's parameters resolved against the job parameters
        (``{{job.parameters.x}}``), a notebook task's widgets the job parameters over its ``base_parameters``."""
        from utils.local.job_runner import task_parameters

        defaults = {p["name"]: str(p.get("default", "")) for p in job.get("parameters", [])}
        tasks = []
        for t in job.get("tasks", []):
            if "python_wheel_task" in t:
                t = {**t, "python_wheel_task": {**t["python_wheel_task"], "parameters": task_parameters(job, t, parameters)}}
            elif "notebook_task" in t:
                widgets = {**t["notebook_task"].get("base_parameters", {}), **defaults, **parameters}
                t = {**t, "notebook_task": {**t["notebook_task"], "base_parameters": widgets}}
            tasks.append(t)
        return tasks

    def cancel_run(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        run = self.runs.get(int((body or {}).get("run_id") or 0))
        if run is None:
            return error(400, "INVALID_PARAMETER_VALUE", f"Run {(body or {}).get('run_id')} does not exist.")
        if run["state"]["life_cycle_state"] != "TERMINATED":
            run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "CANCELED",
                            "state_message": "Run cancelled."}
            run["status"] = {"state": "TERMINATED", "termination_details": {"code": "USER_CANCELED",
                                                                            "type": "SUCCESS", "message": ""}}
            self.cancelled.append(run["run_id"])
        return 200, {}

    def model_version_created(self, name: str, version: str | int) -> int | None:
        """What Unity Catalog does when a version of ``name`` is registered: start the linked deployment job.

        When the registered model carries a ``deployment_job_id`` that ``jobs`` knows, a run of that job with
        the job parameters ``model_name`` and ``model_version`` starts in a thread of its own (its tasks get
        the resolved parameters); returns its run id, else None.
        """
        self.model_versions.setdefault(name, {})[int(version)] = self._version(name, int(version))
        job_id = (self.registered_models.get(name) or {}).get("deployment_job_id")
        job = self.jobs.get(int(job_id)) if str(job_id or "").isdigit() else None
        if job is None:
            return None
        parameters = {"model_name": name, "model_version": str(version)}
        tasks = self._resolved_tasks(job, parameters)
        run_id = self.new_id()
        run = self._run(run_id, int(job_id), job.get("name", f"job {job_id}"), tasks, parameters, "JOB_RUN")
        run["_background"] = True
        self.runs[run_id] = run
        thread = threading.Thread(target=self._finish, args=(run,), name=f"stand-in-run-{run_id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return run_id

    def join_runs(self, timeout: float = 60.0) -> None:
        """Wait for the runs registration started to end (a test's teardown, before it undoes what they use)."""
        for thread in self._threads:
            thread.join(timeout)

    def submit(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        tasks = body.get("tasks") or []
        if not tasks:
            return error(400, "INVALID_PARAMETER_VALUE", "At least one task is required.")
        run_id = self.new_id()
        self.runs[run_id] = self._run(run_id, None, body.get("run_name", ""), tasks)
        return 200, {"run_id": run_id}

    def _run(self, run_id: int, job_id: int | None, name: str, tasks: list[dict[str, Any]],
             parameters: dict[str, str] | None = None, run_type: str = "SUBMIT_RUN") -> dict[str, Any]:
        page = f"{self.host}/?o=0#job/{job_id or 0}/run/{run_id}"
        task_runs = [{"run_id": self.new_id(), "task_key": t["task_key"], "run_page_url": page,
                      "state": {"life_cycle_state": "PENDING", "state_message": ""}, "_task": t} for t in tasks]
        run = {"run_id": run_id, "job_id": job_id, "run_name": name, "run_page_url": page, "run_type": run_type,
               "state": {"life_cycle_state": "PENDING", "state_message": "Waiting for compute"},
               "status": {"state": "PENDING"}, "tasks": task_runs, "_polls": 0}
        if parameters:
            run["job_parameters"] = [{"name": k, "value": str(v)} for k, v in parameters.items()]
        return run

    def _advance(self, run: dict[str, Any]) -> None:
        """PENDING → RUNNING (``running_polls`` polls) → one task per poll, run by ``task_runner`` → TERMINATED.

        So a poll can see one task failed while the run is still RUNNING, as on Databricks. A run that
        registration started goes on in its own thread (:meth:`model_version_created`), not here.
        """
        if run["state"]["life_cycle_state"] == "TERMINATED" or run.get("_background"):
            return
        run["_polls"] += 1
        run["state"] = {"life_cycle_state": "RUNNING", "state_message": "In run"}
        run["status"] = {"state": "RUNNING"}
        if run["_polls"] > self.running_polls:
            self._step(run)

    def _finish(self, run: dict[str, Any]) -> None:
        """Run every task left, in order, then end the run (a run registration started, in its thread)."""
        while run["state"]["life_cycle_state"] != "TERMINATED":
            self._step(run)

    def _step(self, run: dict[str, Any]) -> None:
        """Run the next task by ``task_runner``; after a failure the rest are UPSTREAM_FAILED and the run ends."""
        pending = [t for t in run["tasks"] if "result_state" not in t["state"]]
        failed = next((t["task_key"] for t in run["tasks"] if t["state"].get("result_state") not in (None, "SUCCESS")), None)
        if pending and failed is None:
            task_run = pending[0]
            task_run["start_time"] = int(time.time() * 1000)
            result = self.task_runner(task_run["_task"], self)
            task_run["end_time"] = int(time.time() * 1000)
            task_run["state"] = {"life_cycle_state": "TERMINATED", "result_state": result.result_state,
                                 "state_message": "" if result.result_state == "SUCCESS" else (result.error or "")}
            self.outputs[task_run["run_id"]] = {"logs": result.logs, "logs_truncated": False, "error": result.error,
                                                "error_trace": result.error_trace}
            if result.result_state == "SUCCESS" and len(pending) > 1:
                return
            failed = None if result.result_state == "SUCCESS" else task_run["task_key"]
        for task_run in run["tasks"]:
            if "result_state" not in task_run["state"]:
                task_run["state"] = {"life_cycle_state": "TERMINATED", "result_state": "UPSTREAM_FAILED",
                                     "state_message": "An upstream task failed."}
        overall = "FAILED" if failed else "SUCCESS"
        run["state"] = {"life_cycle_state": "TERMINATED", "result_state": overall,
                        "state_message": f"Task {failed} failed. This caused all downstream tasks to get skipped."
                        if failed else ""}
        code = "SUCCESS" if overall == "SUCCESS" else "RUN_EXECUTION_ERROR"
        run["status"] = {"state": "TERMINATED", "termination_details": {
            "code": code, "type": "SUCCESS" if code == "SUCCESS" else "CLIENT_ERROR",
            "message": "" if code == "SUCCESS" else run["state"]["state_message"]}}

    @staticmethod
    def _public(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: StandInWorkspace._public(v) for k, v in value.items() if not k.startswith("_")}
        if isinstance(value, list):
            return [StandInWorkspace._public(v) for v in value]
        return value

    def get_run(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        run = self.runs.get(int(query.get("run_id", "0") or 0))
        if run is None:
            return error(400, "INVALID_PARAMETER_VALUE", f"Run {query.get('run_id')} does not exist.")
        self._advance(run)
        return 200, self._public(run)

    def list_runs(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        job_id = int(query.get("job_id", "0") or 0)
        runs = sorted((r for r in list(self.runs.values()) if not job_id or r["job_id"] == job_id),
                      key=lambda r: -r["run_id"])  # newest first
        start, size = int(query.get("page_token") or 0), int(query.get("limit") or 20)
        page: dict[str, Any] = {"runs": [self._public(r) for r in runs[start:start + size]],
                                "has_more": start + size < len(runs)}
        if page["has_more"]:
            page["next_page_token"] = str(start + size)
        return 200, page

    def get_run_output(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        run_id = int(query.get("run_id", "0") or 0)
        if run_id in self.runs and self.runs[run_id]["tasks"]:
            return error(400, "INVALID_PARAMETER_VALUE", "Retrieving the output of runs with multiple tasks is not "
                         "supported. Please retrieve the output of each individual task run instead.")
        task_run = next((t for r in self.runs.values() for t in r["tasks"] if t["run_id"] == run_id), None)
        if task_run is None:
            return error(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
        return 200, {**self.outputs.get(run_id, {}), "metadata": self._public(task_run)}

    # ------------------------------------------------------------ files

    def upload(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        path = unquote(found.group(1))
        if not path.startswith("/Volumes/") or len(path.split("/")) < 6:
            return error(400, "INVALID_PARAMETER_VALUE", f"Invalid path {path}: expected /Volumes/<catalog>/<schema>/<volume>/...")
        if path in self.files and query.get("overwrite") == "false":
            return error(409, "ALREADY_EXISTS", f"The file being created already exists: {path}")
        self.files[path] = body if isinstance(body, bytes) else json.dumps(body).encode()
        return 204, None

    # ------------------------------------------------------------ Lakebase online stores

    def _store(self, name: str) -> dict[str, Any]:
        """A store as ``GET`` answers it: ``STARTING`` for its first ``starting_polls`` answers, then ``AVAILABLE``."""
        store = self.online_stores[name]
        if store["state"] == "STARTING":
            store["_polls"] += 1
            if store["_polls"] > self.starting_polls:
                store["state"] = "AVAILABLE"
        return self._public(store)

    def create_online_store(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name, capacity = (body or {}).get("name"), (body or {}).get("capacity")
        if not name or capacity not in self.store_capacities:
            return error(400, "INVALID_PARAMETER_VALUE", f"Invalid online store: name {name!r}, capacity {capacity!r} "
                         f"(valid capacities: {', '.join(self.store_capacities)}).")
        if name in self.online_stores:
            return error(409, "RESOURCE_ALREADY_EXISTS", f"Online store with name '{name}' already exists.")
        self.online_stores[name] = {"name": name, "capacity": capacity, "creator": self.user_name,
                                    "creation_time": "2024-01-01T00:00:00Z",
                                    "read_replica_count": body.get("read_replica_count") or 0,
                                    "state": "STARTING", "_polls": 0}
        return 200, self._public(self.online_stores[name])

    def get_online_store(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.online_stores:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Online store with name '{name}' does not exist.")
        return 200, self._store(name)

    def delete_online_store(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if self.online_stores.pop(name, None) is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Online store with name '{name}' does not exist.")
        return 200, {}

    def list_online_stores(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        names = sorted(self.online_stores)
        start, size = int(query.get("page_token") or 0), int(query.get("page_size") or 100)
        page = {"online_stores": [self._public(self.online_stores[n]) for n in names[start:start + size]]}
        if start + size < len(names):
            page["next_page_token"] = str(start + size)
        return 200, page

    # ------------------------------------------------------------ Unity Catalog models (MLflow's UC registry client)

    def create_registered_model(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = (body or {}).get("name", "")
        if name.count(".") != 2:
            return error(400, "INVALID_PARAMETER_VALUE", f"Model name {name!r} must specify all three levels "
                         "(catalog.schema.model).")
        if name in self.registered_models:
            return error(409, "RESOURCE_ALREADY_EXISTS", f"Registered model '{name}' already exists.")
        model = {"name": name, "creation_timestamp": 1, "last_updated_timestamp": 1, "user_id": self.user_name}
        if body.get("deployment_job_id"):
            model["deployment_job_id"] = body["deployment_job_id"]
        self.registered_models[name] = model
        return 200, {"registered_model": model}

    def get_registered_model(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = query.get("name", "")
        if name not in self.registered_models:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        return 200, {"registered_model": self.registered_models[name]}

    def update_registered_model(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = (body or {}).get("name", "")
        if name not in self.registered_models:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        model = self.registered_models[name]
        for key in ("description", "deployment_job_id"):
            if key in body:
                model[key] = body[key]
        return 200, {"registered_model": model}

    # ------------------------------------------------------------ Unity Catalog objects, workspace folders, data profiling

    def get_table(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.tables:
            return error(404, "TABLE_DOES_NOT_EXIST", f"Table '{name}' does not exist.")
        catalog, schema, table = name.split(".")
        return 200, {"full_name": name, "catalog_name": catalog, "schema_name": schema, "name": table,
                     "table_id": self.tables[name], "table_type": "MANAGED", "data_source_format": "DELTA"}

    def get_catalog(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.catalogs:
            return error(404, "CATALOG_DOES_NOT_EXIST", f"Catalog '{name}' does not exist.")
        return 200, {"name": name, "full_name": name, "owner": self.user_name, "catalog_type": "MANAGED_CATALOG"}

    def get_schema(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.schemas:
            return error(404, "SCHEMA_DOES_NOT_EXIST", f"Schema '{name}' does not exist.")
        catalog, schema = name.split(".")
        return 200, {"full_name": name, "catalog_name": catalog, "name": schema, "schema_id": self.schemas[name]}

    def mkdirs(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        self.folders.add(body["path"])
        return 200, {}

    def get_monitor(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        object_type, object_id = found.group(1), found.group(2)
        if object_type != "table" or object_id not in self.monitors:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Monitor for {object_type} {object_id} does not exist.")
        return 200, self.monitors[object_id]

    def create_monitor(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        object_id = (body or {}).get("object_id", "")
        if body.get("object_type") != "table" or object_id not in self.tables.values():
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Table with id {object_id!r} does not exist.")
        if object_id in self.monitors:
            return error(409, "RESOURCE_ALREADY_EXISTS", f"Monitor for table {object_id} already exists.")
        profiling = body.get("data_profiling_config") or {}
        if not profiling.get("output_schema_id") or "inference_log" not in profiling:
            return error(400, "INVALID_PARAMETER_VALUE", "data_profiling_config needs output_schema_id and a profile type.")
        self.monitors[object_id] = {**body, "data_profiling_config": {**profiling, "status": "DATA_PROFILING_STATUS_PENDING"}}
        return 200, self.monitors[object_id]

    def create_refresh(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        object_id = found.group(2)
        if object_id not in self.monitors:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Monitor for table {object_id} does not exist.")
        refresh = {"object_type": "table", "object_id": object_id, "refresh_id": self.new_id(), "state": "MONITOR_REFRESH_STATE_PENDING",
                   "trigger": "MONITOR_REFRESH_TRIGGER_MANUAL"}
        self.refreshes.append(refresh)
        return 200, refresh

    # ------------------------------------------------------------ what a teardown lists and deletes

    def list_jobs(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        expand = query.get("expand_tasks") == "true"
        ids = sorted(self.jobs)
        start, size = int(query.get("page_token") or 0), int(query.get("limit") or 20)
        page: dict[str, Any] = {"jobs": [{"job_id": i, "creator_user_name": self.user_name, "created_time": 1,
                                          "settings": {k: v for k, v in self.jobs[i].items()
                                                       if expand or k not in ("tasks", "job_clusters")}}
                                         for i in ids[start:start + size]], "has_more": start + size < len(ids)}
        if page["has_more"]:
            page["next_page_token"] = str(start + size)
        return 200, page

    def get_job(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        job_id = int(query.get("job_id", "0") or 0)
        if job_id not in self.jobs:
            return error(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        return 200, {"job_id": job_id, "creator_user_name": self.user_name, "created_time": 1, "settings": self.jobs[job_id]}

    def delete_job(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        job_id = (body or {}).get("job_id")
        if self.jobs.pop(job_id, None) is None:
            return error(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        return 200, {}

    def _version(self, name: str, version: int) -> dict[str, Any]:
        """A version as Unity Catalog's model-versions routes give it (``catalog.ModelVersionInfo``)."""
        catalog, schema, model = ([""] * 2 + name.split("."))[-3:]
        return {"model_name": model, "catalog_name": catalog, "schema_name": schema, "version": version,
                "status": "READY", "created_by": self.user_name, "created_at": 1}

    def get_uc_model(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.registered_models:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        catalog, schema, model = name.split(".")
        return 200, {"full_name": name, "catalog_name": catalog, "schema_name": schema, "name": model,
                     "owner": self.user_name, "created_at": 1}

    def delete_uc_model(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if self.registered_models.pop(name, None) is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        self.model_versions.pop(name, None)  # "Deletes a registered model and all its model versions"
        return 200, {}

    def list_model_versions(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.registered_models:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        versions = self.model_versions.get(name, {})
        return 200, {"model_versions": [versions[v] for v in sorted(versions)]}

    def delete_model_version(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name, version = unquote(found.group(1)), int(found.group(2))
        if self.model_versions.get(name, {}).pop(version, None) is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {name}/{version} does not exist.")
        return 200, {}

    def get_experiment_by_name(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = query.get("experiment_name", "")
        experiment = next((e for e in self.experiments.values() if e["name"] == name), None)
        if experiment is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Could not find experiment with name '{name}'")
        return 200, {"experiment": experiment}

    def delete_experiment(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        experiment = self.experiments.get(str((body or {}).get("experiment_id")))
        if experiment is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"No experiment with id {(body or {}).get('experiment_id')}")
        experiment["lifecycle_stage"] = "deleted"
        return 200, {}

    def get_volume(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.volumes:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Volume '{name}' does not exist.")
        return 200, self.volumes[name]

    def delete_volume(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if self.volumes.pop(name, None) is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Volume '{name}' does not exist.")
        return 200, {}

    def delete_schema(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = unquote(found.group(1))
        if name not in self.schemas:
            return error(404, "SCHEMA_DOES_NOT_EXIST", f"Schema '{name}' does not exist.")
        inside = [n for store in (self.tables, self.volumes, self.registered_models) for n in store
                  if n.startswith(f"{name}.")]
        if inside and query.get("force") != "true":
            return error(400, "SCHEMA_NOT_EMPTY", f"Schema '{name}' is not empty: it holds {', '.join(sorted(inside))}.")
        for store in (self.tables, self.volumes, self.registered_models, self.model_versions):
            for n in [n for n in store if n.startswith(f"{name}.")]:
                del store[n]
        del self.schemas[name]
        return 200, {}

    def delete_monitor(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        object_type, object_id = found.group(1), found.group(2)
        if object_type != "table" or self.monitors.pop(object_id, None) is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Monitor for {object_type} {object_id} does not exist.")
        return 200, {}

    def delete_endpoint(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        if self.endpoints.pop(found.group(1), None) is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{found.group(1)}' does not exist.")
        self.gateways.pop(found.group(1), None)
        return 200, {}

    # ------------------------------------------------------------ Model Serving

    def _detailed(self, name: str) -> dict[str, Any]:
        updating = "IN_PROGRESS" if self.in_progress_polls and self.in_progress_polls[0] > 0 else "NOT_UPDATING"
        if updating == "IN_PROGRESS":
            self.in_progress_polls[0] -= 1
        detailed = {"name": name, "state": {"ready": "READY", "config_update": updating}, "config": self.endpoints[name]}
        if name in self.gateways:
            detailed["ai_gateway"] = self.gateways[name]
        return detailed

    def get_endpoint(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        if found.group(1) not in self.endpoints:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{found.group(1)}' does not exist.")
        return 200, self._detailed(found.group(1))

    def create_endpoint(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        self.endpoints[body["name"]] = body["config"]
        if "ai_gateway" in body:
            self.gateways[body["name"]] = body["ai_gateway"]
        return 200, self._detailed(body["name"])

    def put_ai_gateway(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        name = found.group(1)
        if name not in self.endpoints:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{name}' does not exist.")
        self.gateways[name] = body or {}
        return 200, self.gateways[name]

    def update_config(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        if found.group(1) not in self.endpoints:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{found.group(1)}' does not exist.")
        self.endpoints[found.group(1)] = {k: body[k] for k in ("served_entities", "traffic_config")}
        return 200, self._detailed(found.group(1))

    def invoke(self, found: re.Match, query: dict[str, str], body: Any) -> Answer:
        if self.cold_invocations > 0:  # a served entity still waking up
            self.cold_invocations -= 1
            return error(503, "TEMPORARILY_UNAVAILABLE", "The served entity is scaling up.")
        config = self.endpoints.get(found.group(1))
        entity = next((e for e in (config or {}).get("served_entities", []) if e["name"] == found.group(2)), None)
        if entity is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"nothing at {found.group(0)}")
        return 200, {"predictions": [int(entity["entity_version"]) / 100 for _ in body["dataframe_records"]]}


ROUTES: list[tuple[str, str, Callable[..., Answer]]] = [
    ("GET", r"/api/2\.0/preview/scim/v2/Me", StandInWorkspace.me),
    ("POST", r"/api/2\.2/jobs/run-now", StandInWorkspace.run_now),
    ("POST", r"/api/2\.2/jobs/runs/submit", StandInWorkspace.submit),
    ("GET", r"/api/2\.2/jobs/runs/get", StandInWorkspace.get_run),
    ("GET", r"/api/2\.2/jobs/runs/list", StandInWorkspace.list_runs),
    ("GET", r"/api/2\.2/jobs/runs/get-output", StandInWorkspace.get_run_output),
    ("POST", r"/api/2\.2/jobs/runs/cancel", StandInWorkspace.cancel_run),
    ("PUT", r"/api/2\.0/fs/files(/.+)", StandInWorkspace.upload),
    ("POST", r"/api/2\.0/mlflow/unity-catalog/registered-models/create", StandInWorkspace.create_registered_model),
    ("PATCH", r"/api/2\.0/mlflow/unity-catalog/registered-models/update", StandInWorkspace.update_registered_model),
    ("GET", r"/api/2\.0/mlflow/unity-catalog/registered-models/get", StandInWorkspace.get_registered_model),
    ("GET", r"/api/2\.1/unity-catalog/tables/([^/]+)", StandInWorkspace.get_table),
    ("GET", r"/api/2\.1/unity-catalog/schemas/([^/]+)", StandInWorkspace.get_schema),
    ("GET", r"/api/2\.1/unity-catalog/catalogs/([^/]+)", StandInWorkspace.get_catalog),
    ("POST", r"/api/2\.0/workspace/mkdirs", StandInWorkspace.mkdirs),
    ("GET", r"/api/data-quality/v1/monitors/([^/]+)/([^/]+)", StandInWorkspace.get_monitor),
    ("POST", r"/api/data-quality/v1/monitors", StandInWorkspace.create_monitor),
    ("POST", r"/api/data-quality/v1/monitors/([^/]+)/([^/]+)/refreshes", StandInWorkspace.create_refresh),
    ("GET", r"/api/2\.0/serving-endpoints/([^/]+)", StandInWorkspace.get_endpoint),
    ("POST", r"/api/2\.0/serving-endpoints", StandInWorkspace.create_endpoint),
    ("PUT", r"/api/2\.0/serving-endpoints/([^/]+)/config", StandInWorkspace.update_config),
    ("PUT", r"/api/2\.0/serving-endpoints/([^/]+)/ai-gateway", StandInWorkspace.put_ai_gateway),
    ("POST", r"/serving-endpoints/([^/]+)/served-models/([^/]+)/invocations", StandInWorkspace.invoke),
    ("POST", r"/api/2\.0/feature-store/online-stores", StandInWorkspace.create_online_store),
    ("GET", r"/api/2\.0/feature-store/online-stores", StandInWorkspace.list_online_stores),
    ("GET", r"/api/2\.0/feature-store/online-stores/([^/]+)", StandInWorkspace.get_online_store),
    ("DELETE", r"/api/2\.0/feature-store/online-stores/([^/]+)", StandInWorkspace.delete_online_store),
    ("GET", r"/api/2\.2/jobs/list", StandInWorkspace.list_jobs),
    ("GET", r"/api/2\.2/jobs/get", StandInWorkspace.get_job),
    ("POST", r"/api/2\.2/jobs/delete", StandInWorkspace.delete_job),
    ("GET", r"/api/2\.1/unity-catalog/models/([^/]+)", StandInWorkspace.get_uc_model),
    ("DELETE", r"/api/2\.1/unity-catalog/models/([^/]+)", StandInWorkspace.delete_uc_model),
    ("GET", r"/api/2\.1/unity-catalog/models/([^/]+)/versions", StandInWorkspace.list_model_versions),
    ("DELETE", r"/api/2\.1/unity-catalog/models/([^/]+)/versions/(\d+)", StandInWorkspace.delete_model_version),
    ("GET", r"/api/2\.0/mlflow/experiments/get-by-name", StandInWorkspace.get_experiment_by_name),
    ("POST", r"/api/2\.0/mlflow/experiments/delete", StandInWorkspace.delete_experiment),
    ("GET", r"/api/2\.1/unity-catalog/volumes/([^/]+)", StandInWorkspace.get_volume),
    ("DELETE", r"/api/2\.1/unity-catalog/volumes/([^/]+)", StandInWorkspace.delete_volume),
    ("DELETE", r"/api/2\.1/unity-catalog/schemas/([^/]+)", StandInWorkspace.delete_schema),
    ("DELETE", r"/api/data-quality/v1/monitors/([^/]+)/([^/]+)", StandInWorkspace.delete_monitor),
    ("DELETE", r"/api/2\.0/serving-endpoints/([^/]+)", StandInWorkspace.delete_endpoint),
]


class _Handler(BaseHTTPRequestHandler):
    workspace: StandInWorkspace

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "octet-stream" in (self.headers.get("Content-Type") or ""):
            return raw
        return json.loads(raw) if raw else None

    def _dispatch(self, method: str) -> None:
        ws = self.workspace
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._body() if method in ("POST", "PUT", "PATCH") else None
        ws.calls.append((method, parts.path, body if method != "GET" else (query or None)))
        route = next(((fn, m) for verb, pattern, fn in ROUTES if verb == method
                      for m in [re.fullmatch(pattern, parts.path)] if m), None)
        if route is None:  # e.g. the client's look at /.well-known/databricks-config
            return self._answer(*error(404, "NOT_FOUND", f"no route {method} {parts.path}"))
        if self.headers.get("Authorization") != f"Bearer {ws.token}":
            return self._answer(*error(401, "UNAUTHENTICATED", "missing or wrong token"))
        refused = ws.preview_refusal(method, parts.path, body) or next(
            (a for pattern, a in ws.refusals.items() if re.search(pattern, parts.path)), None) or ws.denial(method, parts.path)
        if refused is not None:
            return self._answer(*refused)
        fn, found = route
        self._answer(*fn(ws, found, query, body))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")


@contextlib.contextmanager
def registrations_reported(workspace: StandInWorkspace) -> Iterator[None]:
    """While open, every model version MLflow's client creates is reported to ``workspace`` as soon as it exists.

    The local MLflow registry holds the versions (the stand-in does not serve Unity Catalog's model-version
    routes); this tells the stand-in of each one, as Unity Catalog's registry tells its jobs service.
    """
    from mlflow.tracking._model_registry.client import ModelRegistryClient

    create = ModelRegistryClient.create_model_version

    def create_and_report(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        version = create(self, name, *args, **kwargs)
        workspace.model_version_created(name, version.version)
        return version

    ModelRegistryClient.create_model_version = create_and_report
    try:
        yield
    finally:
        ModelRegistryClient.create_model_version = create


class RunningWorkspace:
    """A started stand-in (``with`` it, or ``start()`` / ``stop()``): ``.workspace`` holds the state, ``.client()`` talks to it."""

    def __init__(self, workspace: StandInWorkspace | None = None) -> None:
        self.workspace = workspace or StandInWorkspace()
        handler = type("StandIn", (_Handler,), {"workspace": self.workspace})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.workspace.host = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def host(self) -> str:
        return self.workspace.host

    def start(self) -> RunningWorkspace:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RunningWorkspace:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, token: str | None = None, retry_timeout_seconds: int = 30) -> Any:
        """A real ``WorkspaceClient`` authenticated to the stand-in with a personal access token."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        return WorkspaceClient(config=Config(host=self.host, token=token or self.workspace.token, auth_type="pat",
                                             retry_timeout_seconds=retry_timeout_seconds))
