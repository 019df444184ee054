"""The validation gate's verdict as data, and as recorded in MLflow: what ``utils.gate`` returns and writes.

:class:`GateResult` (every :class:`CheckResult`, ``to_dict``/``from_dict``, ``summary``) and :func:`recorded_verdict`,
which reads a version's verdict back from the registry and its training run with the MLflow client. The gate
(``utils.gate``, which re-exports these names) writes it; the deployment triggers and the local deployment job
read it. Imports only ``utils.platform.runtime`` (the MLflow URIs); nothing happens at import time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from utils.platform.runtime import registry_uri, tracking_uri

GATE_TAGS = ("gate_passed", "gate_failed", "gate_summary", "gate_checked_at")
VERDICT_ARTIFACT = "gate/version-{version}.json"
"""Where ``gate_and_set_challenger`` keeps a version's whole result: an artifact of the version's training run."""


@dataclass
class CheckResult:
    """One gate check: did it pass, the measured value, the threshold and why."""

    name: str
    passed: bool
    value: Any
    threshold: Any
    reason: str


@dataclass
class GateResult:
    """The verdict of the validation gate on one model, with every check."""

    model_name: str
    version: str | None
    passed: bool
    checks: list[CheckResult] = field(default_factory=list)
    model_uri: str | None = None
    champion_uri: str | None = None

    def failed(self) -> list[CheckResult]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.passed]

    def check(self, name: str) -> CheckResult:
        """The check called ``name``."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no gate check named {name!r}; checks are {[c.name for c in self.checks]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: verdict, failed check names and every check."""
        return {
            "model_name": self.model_name, "version": self.version, "passed": self.passed,
            "failed": [c.name for c in self.failed()], "model_uri": self.model_uri,
            "champion_uri": self.champion_uri,
            "checks": [{k: _plain(v) for k, v in asdict(c).items()} for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        """The result :meth:`to_dict` wrote (as JSON, e.g. the deployment job's artifact), rebuilt.

        Raises ``ValueError`` naming the missing key when ``data`` is not such a dict.
        """
        try:
            checks = [CheckResult(c["name"], bool(c["passed"]), c.get("value"), c.get("threshold"), c.get("reason", ""))
                      for c in data["checks"]]
            return cls(data["model_name"], data.get("version"), bool(data["passed"]), checks,
                       data.get("model_uri"), data.get("champion_uri"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a gate result (GateResult.to_dict()): missing {exc}") from None

    def summary(self) -> str:
        """Readable verdict: a headline, then one line per check (PASS/FAIL, name, value, threshold, reason).

        Presentation only (``to_dict`` holds the data): a value or threshold that is None shows as ``n/a``
        (the reason says why), whole numbers show without decimals, the signature check shows column
        counts rather than the expected schema, and a reason identical to an earlier check's (a model
        that cannot score fails every check with the same error) is written in full once and referred
        to afterwards. A reason spanning several lines (an exception message) keeps every line, indented.
        """
        label = self.model_name + (f" v{self.version}" if self.version else "")
        lines = [f"{label}: {'PASSED' if self.passed else 'FAILED'}"]
        first_with: dict[str, str] = {}
        for c in self.checks:
            value, threshold = _display(c)
            reason = c.reason
            if reason in first_with:
                reason = f"same reason as {first_with[reason]} above"
            else:
                first_with[reason] = c.name
            reason = reason.replace("\n", "\n    ")
            lines.append(f"{'PASS' if c.passed else 'FAIL'} {c.name}: value={value} threshold={threshold} — {reason}")
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    """Numpy scalars and containers as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _short(value: Any) -> str:
    """A number or value as the summary shows it: ``n/a`` for None, whole numbers without decimals, else 4 digits."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()  # numpy scalar
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


UNITS = {"latency": " ms"}


def _display(check: CheckResult) -> tuple[str, str]:
    """The summary's (value, threshold) text of one check; the signature check as column counts."""
    if check.name != "signature":
        unit = UNITS.get(check.name, "")
        value = check.value
        if isinstance(value, dict) and set(value) == {"auc", "champion_auc"}:
            shown = f"{_short(value['auc'])} vs champion {_short(value['champion_auc'])}"
        else:
            shown = _short(value) + (unit if value is not None else "")
        return shown, _short(check.threshold) + (unit if check.threshold is not None else "")
    expected = check.threshold
    threshold = (f"{len(expected)} columns of the production feature schema" if isinstance(expected, dict)
                 else "the evaluation frame's columns")
    found = check.value
    if not isinstance(found, dict):
        return "n/a", threshold
    counts = [f"{len(found.get(k) or [])} {k}" for k in ("missing", "extra", "mistyped") if found.get(k)]
    return (", ".join(counts) if counts else "all match"), threshold


def registry_client() -> Any:
    """``MlflowClient`` of this platform's tracking server and registry (``utils.platform.runtime``'s URIs, read when called)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())


def recorded_verdict(name: str, version: str | int) -> GateResult | None:
    """The gate's full result on a version, read back from its training run; None when it has not been gated.

    Raises ``ValueError`` when the tags say it was gated but the result cannot be read (a version without
    a training run keeps only its tags).
    """
    import mlflow

    mv = registry_client().get_model_version(name, str(version))
    if "gate_checked_at" not in (mv.tags or {}):
        return None
    uri = f"runs:/{mv.run_id}/{VERDICT_ARTIFACT.format(version=mv.version)}"
    try:
        data = mlflow.artifacts.load_dict(uri)
    except Exception as exc:  # MLflow raises several types for a missing artifact
        raise ValueError(f"version {mv.version} of {name} was gated ({mv.tags.get('gate_summary')}) but {uri} "
                         f"cannot be read: {exc}") from exc
    return GateResult.from_dict(data)
