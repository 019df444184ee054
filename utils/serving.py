"""Real-time serving on Databricks Model Serving: endpoints, served entities, traffic.

``deploy_serving_endpoint`` creates or updates a Model Serving endpoint; ``ModelServingBackend`` gives
a router (``utils.deploy.Router``) one served entity per model version of one endpoint, addressed
through its own URL. The local stand-in, ``mlflow models serve`` processes, is
``utils.local.endpoints``; ``utils.platform.serving_backend`` picks by platform.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from utils.http_server import EndpointError, free_port, port_open  # noqa: F401 - re-exported (their home is the base layer)
from utils.platform.runtime import EnvironmentProblem, registry_uri, tracking_uri
from utils.platform.runtime import workspace_client as platform_workspace_client

# ---------------------------------------------------------------- serving backends (what a router forwards to)


@dataclass(frozen=True)
class ModelServingUpstream:
    """One served entity of a Databricks Model Serving endpoint, addressed directly (not by traffic split)."""

    host: str
    endpoint_name: str
    served_name: str
    auth: Callable[[], dict[str, str]] = field(repr=False, compare=False)

    @property
    def invocations_url(self) -> str:
        """The served entity's own scoring URL (the router, not the endpoint, picks the version)."""
        return (f"{self.host.rstrip('/')}/serving-endpoints/{self.endpoint_name}"
                f"/served-models/{self.served_name}/invocations")

    def headers(self) -> dict[str, str]:
        """Fresh authentication headers from the workspace client (tokens are refreshed as needed)."""
        return dict(self.auth())


WARM_UP_S = 600.0
"""How long :func:`warm_up` waits for every served entity to answer (a container that just became ready, or one
waking from zero, can take minutes)."""


def warm_up(upstreams: list[ModelServingUpstream], timeout_s: float = WARM_UP_S, first_wait_s: float = 1.0,
            max_wait_s: float = 30.0) -> dict[str, int]:
    """Call each served entity directly until its model answers; returns served name -> requests it took.

    The request is an empty ``dataframe_records``: any answer below 500 except 429 (a 400 for the empty
    input included) means the model server is up. A 5xx, a 429 or a connection error is retried after
    ``first_wait_s`` seconds, doubling up to ``max_wait_s``, until ``timeout_s`` seconds have passed in all.

    Raises:
        EndpointError: a served entity did not answer in time, naming it and its last answer.
    """
    import time

    import requests

    deadline = time.monotonic() + timeout_s
    tries: dict[str, int] = {}
    for upstream in upstreams:
        wait, last = first_wait_s, "no answer yet"
        tries[upstream.served_name] = 0
        while True:
            tries[upstream.served_name] += 1
            try:
                answer = requests.post(upstream.invocations_url, json={"dataframe_records": []},
                                       headers=upstream.headers(), timeout=60)
                if answer.status_code < 500 and answer.status_code != 429:
                    break
                last = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + wait > deadline:
                raise EndpointError(f"served entity {upstream.served_name} of endpoint {upstream.endpoint_name} did not "
                                    f"answer within {timeout_s:.0f} s (last: {last}): check its events in the "
                                    "Serving UI; the router would fail its first requests")
            time.sleep(wait)
            wait = min(wait * 2, max_wait_s)
    return tries


class ModelServingBackend:
    """The Model Serving endpoint ``endpoint_name``: one served entity per routed version, traffic by weight.

    ``apply`` creates or updates the endpoint (and waits until it is ready) so its own traffic split matches
    the router's table: callers of the endpoint URL get the same split the router applies per customer.
    Versions the previous table served stay served at 0% traffic, so rolling back to them is a traffic
    change, not a new container build. ``stop`` leaves the endpoint in place: it outlives the notebook.

    ``scale_to_zero`` (on unless asked off) is what ``utils.platform.serving_backend`` keeps on serverless, as an
    always-on endpoint burns Free Edition's daily quota; there an entity idle for about 30 minutes answers the
    router only after a cold start of minutes (``apply`` warms every entity up again). On classic clusters it is
    off, and the endpoint bills while it exists: delete it when done (``python -m utils.teardown``).

    ``inference_table`` ``(catalog, schema, prefix)``: the AI Gateway inference table the endpoint writes
    every request and response to (see :func:`deploy_serving_endpoint`).
    """

    def __init__(self, endpoint_name: str, model_name: str, client: Any = None, workload_size: str = "Small",
                 scale_to_zero: bool = True, inference_table: tuple[str, str, str] | None = None) -> None:
        self.inference_table = inference_table
        self.endpoint_name = endpoint_name
        self.model_name = model_name
        self.client = client
        self.workload_size = workload_size
        self.scale_to_zero = scale_to_zero
        self.warm_up_s = WARM_UP_S
        self.endpoint: Any = None
        self.routed: list[str] = []

    def apply(self, weights_by_version: Mapping[str, int]) -> dict[str, ModelServingUpstream]:
        """Serve these versions with this traffic (and the previous ones at 0%); returns version -> upstream."""
        client = self.client = self.client or workspace_client()
        plan = {str(v): int(w) for v, w in weights_by_version.items()}
        plan.update({v: 0 for v in self.routed if v not in plan})
        names = {v: served_entity_name(self.model_name, v) for v in plan}
        traffic = traffic_percentages({names[v]: w for v, w in plan.items()})
        self.endpoint = deploy_serving_endpoint(
            self.endpoint_name, self.model_name, {n: v for v, n in names.items()}, traffic,
            self.workload_size, self.scale_to_zero, client=client, inference_table=self.inference_table,
        )
        self.routed = [str(v) for v in weights_by_version]
        host, auth = client.config.host, client.config.authenticate
        upstreams = {v: ModelServingUpstream(host, self.endpoint_name, n, auth) for v, n in names.items()}
        warm_up(list(upstreams.values()), self.warm_up_s)
        return upstreams

    def stop(self) -> None:
        """Nothing to stop here: the endpoint keeps serving (delete it in the Serving UI or with the SDK)."""


# ---------------------------------------------------------------- Databricks Model Serving


def workspace_client() -> Any:
    """``databricks.sdk.WorkspaceClient()``, authenticated by the runtime (``utils.platform.runtime.workspace_client``).

    Raises:
        EndpointError: off Databricks, naming the alternatives (a client of your own, or a local endpoint).
    """
    try:
        return platform_workspace_client()
    except EnvironmentProblem:
        raise EndpointError(
            "Model Serving endpoints exist only on Databricks: run this on a Databricks cluster, "
            "pass client=WorkspaceClient(host=..., token=...), or serve locally with utils.local.endpoints.serve(model_uri)"
        ) from None


def served_entity_name(model_name: str, version: str | int) -> str:
    """The served-entity name of one model version: ``<model>-<version>``, e.g. ``<project>_recommender-3``."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", model_name.rsplit(".", 1)[-1])
    return f"{base}-{version}"


def traffic_percentages(weights: Mapping[str, int]) -> dict[str, int]:
    """Whole percentages proportional to ``weights`` that add up to exactly 100 (largest remainder)."""
    bad = {k: w for k, w in weights.items() if not isinstance(w, int) or isinstance(w, bool) or w < 0}
    total = sum(weights.values())
    if bad or total <= 0:
        raise ValueError(f"traffic weights must be whole numbers >= 0 with at least one > 0, got {dict(weights)}")
    exact = {k: 100 * w / total for k, w in weights.items()}
    out = {k: int(x) for k, x in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (exact[k] - out[k], weights[k]), reverse=True)
    for k in by_remainder[: 100 - sum(out.values())]:
        out[k] += 1
    return out


def resolve_versions(model_name: str, version_or_alias_entries: Mapping[str, str | int]) -> dict[str, str]:
    """Map each served-entity name to a model version number, resolving aliases in the registry."""
    from mlflow import MlflowClient

    client: MlflowClient | None = None
    versions: dict[str, str] = {}
    for served_name, ref in version_or_alias_entries.items():
        ref = str(ref).strip()
        if ref.isdigit():
            versions[served_name] = ref
            continue
        client = client or MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())
        versions[served_name] = str(client.get_model_version_by_alias(model_name, ref).version)
    return versions


def endpoint_config(
    model_name: str,
    versions: Mapping[str, str],
    traffic: Mapping[str, int],
    workload_size: str = "Small",
    scale_to_zero: bool = True,
) -> tuple[list[Any], Any]:
    """The served entities and traffic routes of a Model Serving endpoint (databricks-sdk objects)."""
    from databricks.sdk.service.serving import Route, ServedEntityInput, TrafficConfig

    if not versions:
        raise ValueError("no model versions to serve: pass e.g. {'champion': 'champion'}")
    for served_name in versions:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", served_name):
            raise ValueError(f"served entity name {served_name!r} may only hold letters, digits, '-' and '_'")
    if set(traffic) != set(versions):
        raise ValueError(
            f"traffic routes {sorted(traffic)} must name exactly the served entities {sorted(versions)}"
        )
    bad = {k: v for k, v in traffic.items() if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100}
    if bad:
        raise ValueError(f"traffic percentages must be whole numbers from 0 to 100, got {bad}")
    if sum(traffic.values()) != 100:
        raise ValueError(f"traffic percentages must add up to 100, got {sum(traffic.values())} in {dict(traffic)}")
    entities = [
        ServedEntityInput(
            name=served_name,
            entity_name=model_name,
            entity_version=str(version),
            workload_size=workload_size,
            scale_to_zero_enabled=scale_to_zero,
        )
        for served_name, version in versions.items()
    ]
    routes = TrafficConfig(
        routes=[Route(served_entity_name=n, traffic_percentage=int(traffic[n])) for n in versions]
    )
    return entities, routes


def _config_key(entities: Any, routes: Any) -> tuple[frozenset, frozenset]:
    """What decides whether an endpoint already serves a config: entities (name, model, version, size) and routes."""
    served = frozenset(
        (e.name, e.entity_name, str(e.entity_version), e.workload_size, bool(e.scale_to_zero_enabled))
        for e in entities or []
    )
    traffic = frozenset(
        (r.served_entity_name or r.served_model_name, int(r.traffic_percentage or 0))
        for r in (routes.routes if routes is not None and routes.routes else [])
    )
    return served, traffic


_INFERENCE_TABLE_REFUSED: set[str] = set()  # endpoints whose AI Gateway inference table the workspace refused


def _put_inference_table(endpoints: Any, name: str, table: Any, gateway: Any) -> bool:
    """Put the AI Gateway inference table ``table`` on endpoint ``name``, keeping its other AI Gateway settings
    (``gateway``; a PUT replaces the whole config); False, after one line saying why, where the workspace refuses it
    (asked once per endpoint and process: 05 deploys the same endpoint several times)."""
    from databricks.sdk.errors import DatabricksError

    if name in _INFERENCE_TABLE_REFUSED:
        return False
    try:
        endpoints.put_ai_gateway(name, inference_table_config=table,
                                 guardrails=gateway.guardrails if gateway else None,
                                 rate_limits=gateway.rate_limits if gateway else None,
                                 usage_tracking_config=gateway.usage_tracking_config if gateway else None,
                                 fallback_config=gateway.fallback_config if gateway else None)
    except DatabricksError as exc:
        reason = (str(exc).split(". Config: ")[0].strip().splitlines() or [type(exc).__name__])[0][:200]
        print(f"endpoint {name} serves without an AI Gateway inference table ({getattr(exc, 'error_code', '') or type(exc).__name__}: "
              f"{reason}); every prediction still goes to the project's inference log")
        _INFERENCE_TABLE_REFUSED.add(name)
        return False
    return True


def _inference_table_config(inference_table: tuple[str, str, str] | None) -> Any:
    """The AI Gateway inference-table config of ``(catalog, schema, table_name_prefix)``, or None for None."""
    if inference_table is None:
        return None
    from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

    catalog, schema, prefix = inference_table
    return AiGatewayInferenceTableConfig(catalog_name=catalog, schema_name=schema, table_name_prefix=prefix,
                                         enabled=True)


def deploy_serving_endpoint(
    name: str,
    model_name: str,
    version_or_alias_entries: Mapping[str, str | int],
    traffic: Mapping[str, int],
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    client: Any = None,
    timeout: timedelta = timedelta(minutes=30),
    inference_table: tuple[str, str, str] | None = None,
) -> Any:
    """Create or update the Databricks Model Serving endpoint ``name`` and wait until it is ready.

    ``version_or_alias_entries`` maps a served-entity name to a version or alias of ``model_name``
    (e.g. ``{"blue": "champion", "green": "challenger"}``); ``traffic`` maps the same names to
    percentages adding up to 100 (e.g. ``{"blue": 90, "green": 10}``). An endpoint that already
    serves exactly this config is left alone; one with an update in progress is waited for first.
    ``client`` is a ``databricks.sdk.WorkspaceClient`` (default: the runtime's own, on Databricks).

    ``inference_table`` ``(catalog, schema, table_name_prefix)`` turns on the endpoint's AI Gateway inference
    table: every request and response lands in ``<catalog>.<schema>.<prefix>_payload`` (Unity Catalog, Delta).
    It is put on the endpoint once the endpoint exists (``put_ai_gateway``), on a new one and on an existing one
    that has none (legacy ``auto_capture_config`` inference tables can no longer be enabled). Where the workspace
    refuses it (AI Gateway inference tables not enabled there, a region without them, no permission on the
    schema), one line says so and the endpoint serves without it: the project's own inference log does not
    depend on it. Source: https://docs.databricks.com/aws/en/ai-gateway/inference-tables
    """
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import (
        EndpointCoreConfigInput,
        EndpointStateConfigUpdate,
    )

    client = client or workspace_client()
    versions = resolve_versions(model_name, version_or_alias_entries)
    entities, routes = endpoint_config(model_name, versions, traffic, workload_size, scale_to_zero)
    endpoints = client.serving_endpoints
    table = _inference_table_config(inference_table)
    try:
        current = endpoints.get(name)
    except NotFound:
        # The endpoint first, the inference table after: a workspace that refuses the table still gets the endpoint.
        config = EndpointCoreConfigInput(name=name, served_entities=entities, traffic_config=routes)
        created = endpoints.create_and_wait(name=name, config=config, timeout=timeout)
        if table is not None:
            _put_inference_table(endpoints, name, table, None)
        return created
    if current.state is not None and current.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS:
        current = endpoints.wait_get_serving_endpoint_not_updating(name, timeout=timeout)
    gateway = current.ai_gateway
    if table is not None and not (gateway is not None and gateway.inference_table_config is not None
                                  and gateway.inference_table_config.enabled):
        _put_inference_table(endpoints, name, table, gateway)
    live = current.config
    if live is not None and _config_key(live.served_entities, live.traffic_config) == _config_key(entities, routes):
        return current
    return endpoints.update_config_and_wait(name=name, served_entities=entities, traffic_config=routes,
                                            timeout=timeout)
