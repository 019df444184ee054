"""The local stand-ins of a Model Serving endpoint's *served entities*, one per model version, in the router's process.

``LocalBackend`` gives a router (``utils.deploy.Router``) one ``ServedModel`` per version, loaded once, as
``utils.serving.ModelServingBackend`` gives it one served entity per version on Databricks.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.http_server import EndpointError
from utils.platform.runtime import registry_uri, tracking_uri

if TYPE_CHECKING:
    import pandas as pd


class ServedModel:
    """One model version served inside the endpoint's process: loaded once, scored in memory.

    ``models:/<name>/<version>`` is loaded when the endpoint config first names it and stays loaded while it
    is served, so a request costs one ``predict`` and no second HTTP hop. A version logged with ``FeatureEngineeringClient.log_model``
    (it carries ``data/feature_store/feature_spec.yaml``) is served as Model Serving serves it, with
    automatic feature lookup: its raw model behind an online lookup of its own feature spec
    (``utils.local.online_store.serving_model``), so it takes the lookup keys and the request context
    (:meth:`predict_records`); any other version is loaded with ``mlflow.pyfunc.load_model`` and takes
    its model inputs (:meth:`predict_frame`). Loading adds the model's bundled ``code_paths`` to
    ``sys.path`` (MLflow's behaviour); this class puts ``sys.path`` back afterwards, so processes
    started later from this one import the project, not a model's copy of it.
    """

    def __init__(self, model_name: str, version: str | int) -> None:
        self.model_name = model_name
        self.version = str(version)
        self.model_uri = f"models:/{model_name}/{self.version}"
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_s: float | None = None

    def load(self) -> ServedModel:
        """Load the model now (idempotent); returns ``self``.

        Raises:
            EndpointError: the version cannot be loaded (missing, or its flavour fails), with MLflow's reason.
        """
        with self._lock:
            if self._model is None:
                from mlflow import MlflowClient

                t0 = time.perf_counter()
                saved_path = list(sys.path)
                try:  # this platform's registry, whatever MLflow's global URIs point at in this process
                    client = MlflowClient(tracking_uri=tracking_uri(), registry_uri=registry_uri())
                    source = client.get_model_version_download_uri(self.model_name, self.version)
                    self._model = _load_served(source)
                except Exception as exc:  # any load failure is the endpoint's to explain
                    raise EndpointError(f"could not load {self.model_uri} to serve it: {type(exc).__name__}: {exc}") from exc
                finally:
                    sys.path[:] = saved_path
                self.load_s = time.perf_counter() - t0
        return self

    @property
    def looks_up_features(self) -> bool:
        """True when this version looks its own features up (logged with the feature client's ``log_model``)."""
        from utils.local.online_store import FeatureServingModel

        model = self._model if self._model is not None else self.load()._model
        return isinstance(model, FeatureServingModel)

    def predict_frame(self, inputs: pd.DataFrame) -> list[float]:
        """Predictions (floats, one per row of ``inputs``) of this version for its model-input frame."""
        model = self.load()._model
        out = model.predict_features(inputs) if self.looks_up_features else model.predict(inputs)
        return _floats(out)

    def predict_records(self, records: Sequence[Mapping[str, Any]],
                        ) -> tuple[dict[str, Any], list[float], dict[int, list[str]]]:
        """``(columns, predictions, misses)`` for keys-only records (dicts), looked up by the model's own feature spec.

        ``records`` hold the lookup keys and the request context; ``columns`` is them with every looked-up
        feature, column by column (``pandas.DataFrame(columns)`` is the frame; none is built here, the
        inference log builds it off the request path); ``misses`` maps a record's position to the keys the
        online store does not hold (profile tables; those records are not scored and their prediction is
        NaN). Raises ``TypeError`` for a version that does not look its features up.
        """
        model = self.load()._model
        if not self.looks_up_features:
            raise TypeError(f"{self.model_uri} was not logged with the feature client: it does not look features up")
        columns, misses = model.lookup_records(records)
        keep = [i for i in range(len(records)) if i not in misses]
        predictions = [float("nan")] * len(records)
        if keep:
            scored = _floats(model.predict_columns(columns, keep if misses else None))
            for i, p in zip(keep, scored):
                predictions[i] = p
        return columns, predictions, misses

    def feature_versions(self) -> dict[str, int | None]:
        """The Delta version each online table this version reads was published from ({} if it looks nothing up)."""
        return self.load()._model.feature_versions() if self.looks_up_features else {}

    def stop(self) -> None:
        """Release the loaded model."""
        with self._lock:
            self._model = None

    def __repr__(self) -> str:
        return f"ServedModel({self.model_uri!r}, loaded={self._model is not None})"


def _floats(out: Any) -> list[float]:
    import numpy as np

    if hasattr(out, "columns"):  # a DataFrame: the model's single output column
        out = out.iloc[:, 0]
    return [float(p) for p in np.asarray(out, dtype=float).ravel()]


def _load_served(source: str) -> Any:
    """The served form of the model at ``source``: a feature-store model's online-lookup wrapper, else its pyfunc."""
    import tempfile

    import mlflow.artifacts
    import mlflow.pyfunc

    from utils.local.online_store import serving_model
    from utils.platform.runtime import tmp_dir

    tmp_dir().mkdir(parents=True, exist_ok=True)
    download = tempfile.mkdtemp(prefix="served-", dir=tmp_dir())
    try:  # the model is in memory once loaded: its downloaded copy goes
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=download))
        data = local / "data" / "feature_store"
        if (data / "feature_spec.yaml").exists():
            served = serving_model(data)
            served.online_lookup()  # an unpublished feature table fails the switch now, not every request later
            return served
        return mlflow.pyfunc.load_model(str(local))
    finally:
        shutil.rmtree(download, ignore_errors=True)


class LocalBackend:
    """The local endpoint's served entities: one in-memory ``ServedModel`` per model version.

    ``apply`` loads every version the new endpoint config names before the router switches to it (a
    version that cannot load fails the switch and leaves the old config serving); loaded versions stay
    loaded, so switching back (a rollback) is instant, as a served entity kept at 0% traffic is on
    Databricks.
    """

    def __init__(self, model_name: str, timeout_s: float = 300.0) -> None:
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.served: dict[str, ServedModel] = {}

    def apply(self, weights_by_version: Mapping[str, int]) -> dict[str, ServedModel]:
        """Load every version not served yet; returns version -> served model (all versions loaded so far)."""
        for version in weights_by_version:
            if str(version) not in self.served:
                self.served[str(version)] = ServedModel(self.model_name, version).load()
        return dict(self.served)

    def stop(self) -> None:
        """Release every served model."""
        served, self.served = list(self.served.values()), {}
        for model in served:
            model.stop()
