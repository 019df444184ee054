"""Container and cluster targets of the model: a Docker build context and a Kubernetes Deployment + Service.

``generate_dockerfile`` downloads the model here and calls MLflow's own generator on that folder;
``kubernetes_manifests`` describes a Deployment + Service for the image it builds; ``dockerfile_problems`` and
``manifest_problems`` check both without a Docker engine or a cluster. Files go under
``utils.packaging.package_dir()``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from utils.config import Config, get_config
from utils.packaging import PackagingError, download_model, package_dir, run_command

SERVING_PORT = 8080  # the port MLflow's model container listens on
READINESS_PATH = "/ping"
LIVENESS_PATH = "/health"
CONTAINER_MODEL_DIR = "/opt/ml/model"


def generate_dockerfile(model_uri: str, out_dir: Path | None = None) -> Path:
    """Write the model's Docker build context with ``mlflow models generate-dockerfile``; returns the folder.

    The model is downloaded in this process (``mlflow.artifacts.download_artifacts``, with this
    process's registry credentials) and the generator runs on that local folder. The result holds the
    ``Dockerfile`` and the model under ``model_dir/``; build it with ``docker build -t <image> <folder>``.
    No Docker engine is needed to generate it. Raises PackagingError when the generator fails.
    """
    out_dir = Path(out_dir or package_dir() / "docker")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
    # The registry is read here, where the credentials are (on Databricks the notebook's); the generator
    # only copies a local folder, so its process needs none and makes no registry call.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))}
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix="docker-model-") as tmp:
        model_dir = download_model(model_uri, Path(tmp) / "model")
        # The trailing "/" makes MLflow copy the folder's contents into model_dir/ (COPY model_dir /opt/ml/model),
        # as it does for a models:/ URI, instead of nesting the folder as model_dir/model.
        run_command([*cmd, "models", "generate-dockerfile", "--model-uri", f"{model_dir.as_posix()}/",
                     "--output-directory", str(out_dir)],
                    f"generating the Dockerfile for {model_uri}",
                    f"check that {model_dir} is an MLflow model folder (MLmodel)", env=env)
    if not (out_dir / "Dockerfile").exists():
        raise PackagingError(f"mlflow wrote no Dockerfile into {out_dir}")
    return out_dir


def dockerfile_problems(context_dir: Path) -> list[str]:
    """What is wrong with a generated Docker context (empty when it would serve the model)."""
    context_dir = Path(context_dir)
    path = context_dir / "Dockerfile"
    if not path.exists():
        return [f"no Dockerfile in {context_dir}"]
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    problems = []
    if not lines or not lines[0].startswith("FROM "):
        problems.append("the first instruction is not FROM")
    copies = [ln.split()[1:] for ln in lines if ln.startswith("COPY ")]
    model_copy = [c for c in copies if len(c) == 2 and c[1] == CONTAINER_MODEL_DIR]
    if not model_copy:
        problems.append(f"no COPY of the model to {CONTAINER_MODEL_DIR}")
    elif not (context_dir / model_copy[0][0] / "MLmodel").exists():
        problems.append(f"the copied folder {model_copy[0][0]} holds no MLmodel")
    entry = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
    if not entry:
        problems.append("no ENTRYPOINT")
    else:
        try:
            argv = json.loads(entry[-1][len("ENTRYPOINT "):])
        except json.JSONDecodeError:
            argv = []
        if not argv or "_serve" not in " ".join(argv):
            problems.append("the ENTRYPOINT does not start MLflow's model server")
    return problems


def image_name(model_version: str | int, registry_prefix: str = "", cfg: Config | None = None) -> str:
    """The image tag for a model version: ``[<registry>/]<model name with - for _>:v<version>``."""
    cfg = cfg or get_config()
    prefix = registry_prefix.rstrip("/") + "/" if registry_prefix else ""
    return f"{prefix}{cfg.model_base_name.replace('_', '-').lower()}:v{model_version}"


def _model_container(image: str, port: int, workers: int, requests: dict[str, str],
                     limits: dict[str, str]) -> dict[str, Any]:
    """The pod's one container: the model image on ``port``, with readiness and liveness probes."""

    def probe(path: str, delay: int, period: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": delay, "periodSeconds": period,
                "timeoutSeconds": 5, "failureThreshold": 3}

    return {
        "name": "model",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "MLFLOW_MODELS_WORKERS", "value": str(workers)}],
        "resources": {"requests": requests, "limits": limits},
        "readinessProbe": probe(READINESS_PATH, 10, 5),
        "livenessProbe": probe(LIVENESS_PATH, 30, 10),
    }


def kubernetes_manifests(
    image: str,
    model_name: str,
    model_version: str | int,
    *,
    app_name: str | None = None,
    replicas: int = 2,
    port: int = SERVING_PORT,
    cpu: str = "500m",
    memory: str = "1Gi",
    cpu_limit: str = "2",
    memory_limit: str = "2Gi",
    workers: int = 2,
    cfg: Config | None = None,
) -> list[dict[str, Any]]:
    """A Deployment and a Service serving the model image on ``port``, with readiness and liveness probes.

    The selector uses only the stable app labels, so a new model version rolls out (zero unavailable
    replicas) under the same Deployment; the model name and version are labels/annotations on the pods.
    ``workers`` sets MLFLOW_MODELS_WORKERS (the container otherwise starts one per *node* CPU).
    Raises ValueError for ``replicas`` or ``workers`` below 1, or a name Kubernetes refuses.
    """
    cfg = cfg or get_config()
    if replicas < 1 or workers < 1:
        raise ValueError(f"replicas ({replicas}) and workers ({workers}) must be at least 1")
    name = app_name or cfg.model_base_name.replace("_", "-").lower()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(f"{name!r} is not a valid Kubernetes name: lower-case letters, digits and '-', at most 63")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "model-server"}
    pod_labels = {**selector, "app.kubernetes.io/part-of": cfg.project, "app.kubernetes.io/version": f"v{model_version}"}
    metadata = {"labels": pod_labels, "annotations": {"mlflow.org/model-name": model_name,
                                                      "mlflow.org/model-version": str(model_version)}}
    container = _model_container(image, port, workers, {"cpu": cpu, "memory": memory},
                                 {"cpu": cpu_limit, "memory": memory_limit})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, **metadata},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": metadata, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, **metadata},
        "spec": {"type": "ClusterIP", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]},
    }
    return [deployment, service]


def write_manifests(docs: list[dict[str, Any]], path: Path | None = None) -> Path:
    """Write ``docs`` as one multi-document YAML file (for ``kubectl apply -f``); returns its path."""
    import yaml

    class _PlainDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # repeated labels stay readable, no &id001 anchors
            return True

    path = Path(path or package_dir() / "k8s" / "model-serving.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump_all(docs, Dumper=_PlainDumper, sort_keys=False))
    return path


def manifest_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What would stop a Deployment + Service pair from serving (empty when consistent)."""
    problems = []
    deployments = [d for d in docs if d and d.get("kind") == "Deployment"]
    services = [d for d in docs if d and d.get("kind") == "Service"]
    if len(deployments) != 1 or len(services) != 1:
        return [f"expected one Deployment and one Service, found {len(deployments)} and {len(services)}"]
    dep, svc = deployments[0], services[0]
    spec = dep.get("spec", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    if not selector:
        problems.append("the Deployment has no selector.matchLabels")
    if any(pod_labels.get(k) != v for k, v in selector.items()):
        problems.append(f"the Deployment selector {selector} does not match its pod labels {pod_labels}")
    svc_selector = svc.get("spec", {}).get("selector", {})
    if not svc_selector or any(pod_labels.get(k) != v for k, v in svc_selector.items()):
        problems.append(f"the Service selector {svc_selector} matches no pod labels {pod_labels}")
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    if not containers:
        return [*problems, "the Deployment has no container"]
    c = containers[0]
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    numbers = set(ports.values())
    for sp in svc.get("spec", {}).get("ports", []):
        target = sp.get("targetPort", sp.get("port"))
        if (ports.get(target) if isinstance(target, str) else target) not in numbers:
            problems.append(f"the Service targetPort {target!r} is not a container port {sorted(numbers)}")
    for kind in ("readinessProbe", "livenessProbe"):
        probe = c.get(kind, {}).get("httpGet")
        if not probe:
            problems.append(f"the container has no HTTP {kind}")
        elif (ports.get(probe.get("port")) if isinstance(probe.get("port"), str) else probe.get("port")) not in numbers:
            problems.append(f"the {kind} port {probe.get('port')!r} is not a container port")
    if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
        problems.append("the container has no resource requests and limits")
    if not c.get("image"):
        problems.append("the container has no image")
    return problems
