"""Endpoint health for the 360° page (``utils.dashboard``): local endpoints, probed URLs, the Model Serving endpoint.

Every function returns :class:`EndpointStatus` values, never HTML; an endpoint that does not answer is a
status with ``up=False`` and the reason, not an error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from utils.config import Config, get_config
from utils.platform import EnvironmentProblem, workspace_client

PROBE_TIMEOUT_S = 2.0


@dataclass
class EndpointStatus:
    """Health of one endpoint, and its traffic split when it says."""

    name: str
    url: str
    kind: str
    up: bool
    detail: str
    model: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)


def check_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError naming the fix when it is not an http(s) URL."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint URL {url!r} is not an http(s) URL: pass e.g. 'http://127.0.0.1:5001'")
    return url.rstrip("/")


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read(65536)
    except urllib.error.HTTPError as exc:
        return int(exc.code), b""


def probe_endpoint(url: str, timeout: float = PROBE_TIMEOUT_S) -> EndpointStatus:
    """Health of the endpoint at ``url`` (``GET /health``, else ``/ping``); a router's ``/routes`` adds its split.

    An endpoint that does not answer is a status with ``up=False`` and the reason in ``detail``, not an error;
    ValueError only for a URL that is not http(s).
    """
    base = check_url(url)
    reasons = []
    for path in ("/health", "/ping"):
        try:
            code, _ = _get(base + path, timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            reasons.append(f"GET {path}: {reason}")
            if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
                break  # nothing listens: the other path will not answer either
            continue
        if code == 200:
            status = EndpointStatus(base, base, "url", True, f"GET {path} answered 200")
            _add_routes(status, timeout)
            return status
        reasons.append(f"GET {path}: HTTP {code}")
    return EndpointStatus(base, base, "url", False, "; ".join(reasons))


def _add_routes(status: EndpointStatus, timeout: float) -> None:
    """Fill ``versions`` and ``weights`` from a router's ``GET /routes`` (absent on a plain model server)."""
    try:
        code, body = _get(status.url + "/routes", timeout)
        routes = json.loads(body) if code == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return
    if isinstance(routes, dict) and isinstance(routes.get("weights"), dict):
        status.kind = "router"
        status.versions = {str(k): str(v) for k, v in (routes.get("versions") or {}).items()}
        status.weights = {str(k): int(v) for k, v in routes["weights"].items()}


def _databricks_endpoint(cfg: Config, client: Any) -> EndpointStatus:
    """State and traffic split of the Model Serving endpoint ``cfg.endpoint_name`` (``client``: a WorkspaceClient)."""
    from databricks.sdk.errors import NotFound

    try:
        ep = client.serving_endpoints.get(cfg.endpoint_name)
    except NotFound:
        return EndpointStatus(cfg.endpoint_name, "", "databricks", False, "no such serving endpoint")
    ready = ep.state is not None and getattr(ep.state.ready, "value", None) == "READY"
    update = getattr(getattr(ep.state, "config_update", None), "value", "unknown")
    status = EndpointStatus(cfg.endpoint_name, ep.endpoint_url or "", "databricks", ready,
                            f"{'READY' if ready else 'NOT_READY'}, config update {update}")
    config = ep.config
    if config is not None:
        status.versions = {e.name: str(e.entity_version) for e in config.served_entities or []}
        routes = config.traffic_config.routes if config.traffic_config else []
        status.weights = {r.served_entity_name or r.served_model_name: int(r.traffic_percentage) for r in routes or []}
    return status


def endpoint_statuses(endpoint_urls: Sequence[str] = (), cfg: Config | None = None) -> list[EndpointStatus]:
    """Every endpoint this process runs, every URL given, and (on Databricks) the serving endpoint.

    Raises ValueError for a URL that is not http(s).
    """
    cfg = cfg or get_config()
    urls = [check_url(u) for u in endpoint_urls]
    found = []
    try:
        client = workspace_client()
    except EnvironmentProblem:
        client = None  # no workspace, so no Model Serving endpoint to show
    if client is not None:
        found.append(_databricks_endpoint(cfg, client))
    from utils.local.endpoints import running_endpoints

    for ep in running_endpoints():
        up = ep.health()
        found.append(EndpointStatus(f"local endpoint :{ep.port}", ep.url, "local endpoint", up,
                                    "GET /health answered 200" if up else "not answering GET /health",
                                    model=ep.model_uri))
        if ep.url in urls:
            urls.remove(ep.url)
    found.extend(probe_endpoint(u) for u in urls)
    return found
