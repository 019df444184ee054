"""Model registry helpers: register, aliases with an audit trail, promotion, rollback.

Locally the registry is MLflow on SQLite; on Databricks it is Unity Catalog (three-level names such as
``get_config().model_name``). Versions are addressed by the aliases ``champion`` / ``challenger`` from
the config, never by the deprecated stages.

Every alias move is audited on the model version it points to: a tag ``audit_<n>`` holding compact
JSON (action, alias, actor, time, reason, gate verdict), ``n`` being a sequence number shared by the
whole registered model. The registered model keeps ``audit_log`` (the latest events, newest last)
so the promotion history reads in one place, and ``champion_history`` / ``previous_champion`` so a
rollback is one call. Tag keys use no dots and values stay under 1000 characters, which Unity
Catalog accepts.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from utils.config import get_config
from utils.platform.runtime import current_user, registry_uri, tracking_uri

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

TAG_VALUE_LIMIT = 1000  # Unity Catalog's limit on a tag value; applied everywhere so local behaves the same
AUDIT_LOG_MAX = 8  # entries kept in the registered model's `audit_log` tag (also bounded by TAG_VALUE_LIMIT)
CHAMPION_HISTORY_MAX = 10  # past champions remembered for rollback
AWAIT_READY_S = 300

AUDIT_PREFIX = "audit_"
AUDIT_SEQ_TAG = "audit_seq"
AUDIT_LOG_TAG = "audit_log"
PREVIOUS_CHAMPION_TAG = "previous_champion"
CHAMPION_HISTORY_TAG = "champion_history"
# Unity Catalog refuses these characters in tag keys; checked everywhere so a local run fails as Databricks would.
# Source: https://docs.databricks.com/aws/en/database-objects/tags ("not allowed in tag keys: . , - = / :").
TAG_KEY_RESERVED = ".,-=/:"
INPUT_TAG_PREFIX = "input__"
AUDIT_COLUMNS = ["seq", "version", "action", "alias", "actor", "at", "reason", "gate_passed", "from_version"]



class PromotionRefused(RuntimeError):
    """A promotion was attempted without a passing validation gate."""


class RollbackError(RuntimeError):
    """There is no previous champion to roll back to."""


class MlflowNotConfigured(RuntimeError):
    """MLflow points somewhere other than this platform's tracking server and registry."""


# ---------------------------------------------------------------- plumbing


def _client() -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def check_mlflow_configured() -> None:
    """Raise unless MLflow's current tracking and registry URIs are this platform's."""
    import mlflow

    want = (tracking_uri(), registry_uri())
    have = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    if have != want:
        raise MlflowNotConfigured(
            f"MLflow points at tracking={have[0]!r}, registry={have[1]!r} but this platform uses "
            f"tracking={want[0]!r}, registry={want[1]!r}: call utils.platform.configure_mlflow() first"
        )


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    if os.environ.get("MLOPS_ACTOR"):
        return os.environ["MLOPS_ACTOR"]
    user = current_user()
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compact_gate(gate_result: Any) -> dict[str, Any] | None:
    """``{"passed": bool, "failed": [check names]}`` from a GateResult or its ``to_dict()``."""
    if gate_result is None:
        return None
    d = gate_result.to_dict() if hasattr(gate_result, "to_dict") else dict(gate_result)
    if "passed" not in d:
        raise ValueError("gate_result has no 'passed' key: pass the GateResult of utils.gate.run_gate (or its to_dict())")
    failed = d.get("failed")
    if failed is None:
        failed = [c["name"] for c in d.get("checks", []) if not c.get("passed")]
    return {"passed": bool(d["passed"]), "failed": list(failed)}


def _json_tag(entry: dict[str, Any]) -> str:
    """Compact JSON that fits a tag value, shortening the reason if needed."""
    text = json.dumps(entry, separators=(",", ":"), default=str)
    over = len(text) - TAG_VALUE_LIMIT
    if over > 0 and entry.get("reason"):
        entry = {**entry, "reason": _fit(str(entry["reason"]), max(10, len(entry["reason"]) - over))}
        text = json.dumps(entry, separators=(",", ":"), default=str)
    return _fit(text, TAG_VALUE_LIMIT)


def _json_list(text: str | None) -> list[Any]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def _bounded_log(entries: list[dict[str, Any]]) -> str:
    """The newest entries (at most AUDIT_LOG_MAX) whose JSON list fits a tag value."""
    kept = entries[-AUDIT_LOG_MAX:]
    text = json.dumps(kept, separators=(",", ":"))
    while len(text) > TAG_VALUE_LIMIT and kept:
        kept = kept[1:]
        text = json.dumps(kept, separators=(",", ":"))
    return text


# ---------------------------------------------------------------- registration


# What MLflow prints to stderr when a registration or a copy succeeds; callers show the version themselves.
_MLFLOW_REGISTRATION_NOTE = re.compile(
    r"(Successfully registered model |Registered model .* already exists|Created version |Copied version )")


@contextlib.contextmanager
def registration_notes_hidden() -> Iterator[None]:
    """Keep MLflow's success notes (registered, created, copied) off stderr; anything else it prints still shows."""
    with contextlib.redirect_stderr(io.StringIO()) as said:
        try:
            yield
        finally:
            unexpected = [line for line in said.getvalue().splitlines() if not _MLFLOW_REGISTRATION_NOTE.match(line)]
    if unexpected:
        print("\n".join(unexpected), file=sys.stderr)


def register(
    model_uri: str,
    name: str | None = None,
    description: str | None = None,
    tags: dict | None = None,
) -> ModelVersion:
    """Register ``model_uri`` as a new version of ``name`` (default: the config's model), wait until READY.

    Sets the description and tags; returns the version. What runs on registration (the deployment job's
    gate) is the registry's business: ``utils.platform.deployment_trigger`` wires it up on each platform.

    Raises:
        ValueError: ``model_uri`` is empty, or a tag key holds a character Unity Catalog refuses
            (checked before anything is registered; :func:`input_tags` names input tables safely).
    """
    import mlflow

    if not model_uri:
        raise ValueError("model_uri is empty: pass e.g. 'runs:/<run_id>/model' or the model_uri of log_model()")
    check_mlflow_configured()
    name = name or get_config().model_name
    str_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    check_tag_keys(str_tags)
    with registration_notes_hidden():
        mv = mlflow.register_model(model_uri, name, await_registration_for=AWAIT_READY_S, tags=str_tags or None)
    client = _client()
    if mv.status != "READY":
        raise RuntimeError(
            f"version {mv.version} of {name} is {mv.status} after {AWAIT_READY_S}s "
            f"({mv.status_message or 'no message'}): check the registry, then retry"
        )
    if description:
        client.update_model_version(name, mv.version, description=description)
    return client.get_model_version(name, mv.version)


# ---------------------------------------------------------------- reading the registry


def get_version(name: str, version: str | int) -> ModelVersion:
    """Version ``version`` of registered model ``name`` (MLflow raises ``RESOURCE_DOES_NOT_EXIST`` if missing)."""
    return _client().get_model_version(name, str(version))


def get_alias_version(name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points to, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        version = client.get_registered_model(name).aliases.get(alias)
    except MlflowException as exc:
        if _is_not_found(exc):
            return None
        raise
    return None if version is None else client.get_model_version(name, str(version))


def versions(name: str) -> list[ModelVersion]:
    """Every version of registered model ``name`` (all pages); MLflow raises ``RESOURCE_DOES_NOT_EXIST`` if missing."""
    client = _client()
    found: list[ModelVersion] = []
    token = None
    while True:
        page = client.search_model_versions(f"name='{name}'", page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def latest_version(name: str) -> ModelVersion | None:
    """The highest-numbered version of ``name``; None if it has none (or does not exist)."""
    found = versions(name)
    if not found:
        return None
    newest = max(found, key=lambda mv: int(mv.version))
    return _client().get_model_version(name, newest.version)


def check_tag_keys(tags: Mapping[str, Any]) -> None:
    """Refuse tag keys Unity Catalog refuses (any of ``. , - = / :``), on every platform.

    Raises:
        ValueError: naming the first bad key, its reserved characters, and a key that would do.
    """
    for key in tags:
        bad = sorted({c for c in str(key) if c in TAG_KEY_RESERVED})
        if bad:
            fixed = "".join("_" if c in TAG_KEY_RESERVED else c for c in str(key))
            raise ValueError(f"tag key {key!r} contains {' '.join(bad)}, which Unity Catalog refuses in tag keys: "
                             f"use e.g. {fixed!r} (see registry.input_tags for table names)")


def input_tags(inputs: Mapping[str, int | None]) -> dict[str, str]:
    """Model-version tags recording the Delta version of each input table.

    ``{"workspace.mlops.training_set": 3}`` gives ``{"input__workspace__mlops__training_set": "3"}``: the
    dots of a three-level name become ``__``, as Unity Catalog refuses dots in tag keys. Read them back
    with :func:`inputs_from_tags`.
    """
    return {INPUT_TAG_PREFIX + str(table).replace(".", "__"): "" if v is None else str(v) for table, v in inputs.items()}


def inputs_from_tags(tags: Mapping[str, str]) -> dict[str, int | None]:
    """The ``{table: Delta version}`` that :func:`input_tags` recorded (other tags are ignored)."""
    return {k[len(INPUT_TAG_PREFIX):].replace("__", "."): (int(v) if v != "" else None)
            for k, v in tags.items() if k.startswith(INPUT_TAG_PREFIX)}


def set_version_tags(name: str, version: str | int, tags: dict[str, Any]) -> None:
    """Set string tags on a model version, each value cut to the registry's tag-value limit.

    Raises:
        ValueError: a key holds a character Unity Catalog refuses (:func:`check_tag_keys`).
    """
    check_tag_keys(tags)
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), str(key), _fit(str(value), TAG_VALUE_LIMIT))


# ---------------------------------------------------------------- aliases with an audit trail


def _record(
    name: str, version: str, action: str, alias: str, reason: str, actor: str | None,
    gate_result: Any, from_version: str | None,
) -> dict[str, Any]:
    client = _client()
    model = client.get_registered_model(name)
    # microseconds, not the counter + 1 alone: two writers at once (a job's deployment task, a notebook's rollback)
    # read the same counter, and the second's entry would overwrite the first's on the same version
    seq = max(int(model.tags.get(AUDIT_SEQ_TAG, "0")) + 1, time.time_ns() // 1000)
    entry: dict[str, Any] = {
        "action": action, "alias": alias, "actor": _actor(actor), "at": _now(), "reason": reason,
        "gate": _compact_gate(gate_result), "from": from_version,
    }
    client.set_model_version_tag(name, version, f"{AUDIT_PREFIX}{seq}", _json_tag(entry))
    client.set_registered_model_tag(name, AUDIT_SEQ_TAG, str(seq))
    # the model's summary log (its last entries, for the UI) is read again just before it is written, so another
    # writer's entry since is kept; two writers that both re-read first can still drop one summary entry, never a
    # trail entry: audit_trail() reads the versions' own audit tags, one per entry
    log = [e for e in _json_list(client.get_registered_model(name).tags.get(AUDIT_LOG_TAG)) if e.get("n") != seq]
    gate = entry["gate"]
    log.append({"n": seq, "v": str(version), "action": action, "alias": alias, "by": entry["actor"], "at": entry["at"],
                "gate": None if gate is None else gate["passed"]})
    log.sort(key=lambda e: int(e.get("n", 0)))
    client.set_registered_model_tag(name, AUDIT_LOG_TAG, _bounded_log(log))
    return entry


def set_alias(
    name: str,
    alias: str,
    version: str | int,
    reason: str,
    actor: str | None = None,
    gate_result: Any = None,
    *,
    action: str = "set_alias",
) -> None:
    """Point ``alias`` at ``version`` and record who, when, why and the gate verdict on that version.

    ``actor`` defaults to ``MLOPS_ACTOR`` or the login name. ``gate_result`` is a GateResult or its
    ``to_dict()``; the audit keeps whether it passed and which checks failed.
    """
    if not reason or not str(reason).strip():
        raise ValueError("reason is required: say why the alias moves, it goes into the audit trail")
    if not alias:
        raise ValueError("alias is empty: use get_config().champion_alias or .challenger_alias")
    version = str(version)
    client = _client()
    client.get_model_version(name, version)  # fails clearly if the version does not exist
    current = get_alias_version(name, alias)
    client.set_registered_model_alias(name, alias, version)
    _record(name, version, action, alias, str(reason), actor, gate_result,
            None if current is None else str(current.version))


def promote(name: str, version: str | int, gate_result: Any, reason: str, actor: str | None = None) -> None:
    """Make ``version`` the champion, only when ``gate_result`` passed; the old champion is kept for rollback.

    Raises PromotionRefused (naming the failed checks) when the gate did not pass, or when the gate
    result is for another version. Promoting the current champion again changes nothing.
    """
    version = str(version)
    if gate_result is None:
        raise PromotionRefused(f"promotion of {name} v{version} refused: no gate result; run utils.gate.run_gate first")
    d = gate_result.to_dict() if hasattr(gate_result, "to_dict") else dict(gate_result)
    verdict = _compact_gate(d) or {"passed": False, "failed": []}
    gated = d.get("version")
    if gated not in (None, "") and (str(gated) != version or d.get("model_name", name) != name):
        raise PromotionRefused(f"promotion of {name} v{version} refused: the gate result is for "
                               f"{d.get('model_name', name)} version {gated}")
    if not verdict["passed"]:
        failed = ", ".join(verdict["failed"]) or "unnamed checks"
        raise PromotionRefused(f"promotion of {name} v{version} refused: the validation gate failed ({failed})")
    cfg = get_config()
    current = get_alias_version(name, cfg.champion_alias)
    if current is not None and str(current.version) == version:
        return
    set_alias(name, cfg.champion_alias, version, reason, actor, d, action="promote")
    if current is not None:
        client = _client()
        history = _json_list(client.get_registered_model(name).tags.get(CHAMPION_HISTORY_TAG))
        history = [*history, str(current.version)][-CHAMPION_HISTORY_MAX:]
        client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
        client.set_registered_model_tag(name, PREVIOUS_CHAMPION_TAG, str(current.version))


def rollback(name: str, reason: str, actor: str | None = None) -> int:
    """Point the champion back at the previous champion (audited); returns that version number."""
    cfg = get_config()
    client = _client()
    tags = client.get_registered_model(name).tags
    history = _json_list(tags.get(CHAMPION_HISTORY_TAG))
    if not history and tags.get(PREVIOUS_CHAMPION_TAG):
        history = [tags[PREVIOUS_CHAMPION_TAG]]
    if not history:
        raise RollbackError(
            f"{name} has no previous champion to roll back to: rollback needs an earlier promote() "
            f"that replaced a champion"
        )
    target = str(history.pop())
    set_alias(name, cfg.champion_alias, target, reason, actor, action="rollback")
    client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history))
    if history:
        client.set_registered_model_tag(name, PREVIOUS_CHAMPION_TAG, str(history[-1]))
    else:
        client.delete_registered_model_tag(name, PREVIOUS_CHAMPION_TAG)
    return int(target)


def audit_trail(name: str) -> pd.DataFrame:
    """Every audited alias move of ``name``, oldest first: version, action, alias, actor, at, reason, gate_passed."""
    import pandas as pd

    client = _client()
    rows = []
    for mv in versions(name):
        tags = client.get_model_version(name, mv.version).tags  # search results may omit tags (Unity Catalog)
        for key, value in tags.items():
            if not key.startswith(AUDIT_PREFIX) or not key[len(AUDIT_PREFIX):].isdigit():
                continue
            try:
                entry = json.loads(value)
            except json.JSONDecodeError:
                entry = {"reason": value}
            gate = entry.get("gate") or {}
            rows.append({
                "seq": int(key[len(AUDIT_PREFIX):]), "version": int(mv.version), "action": entry.get("action"),
                "alias": entry.get("alias"), "actor": entry.get("actor"), "at": entry.get("at"),
                "reason": entry.get("reason"), "gate_passed": gate.get("passed"), "from_version": entry.get("from"),
            })
    return pd.DataFrame(rows, columns=AUDIT_COLUMNS).sort_values("seq", ignore_index=True)
