"""The feature spec: what a training set looks up, saved as ``feature_spec.yaml`` inside a logged model.

Apart from the local feature client because it ships inside logged models (``feature_models``
bundles it): the served model reads it to know which features to look up in the online store and needs
nothing else from the client. The layout follows Databricks' ``data/feature_store/feature_spec.yaml``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPEC_FILE = "feature_spec.yaml"
SPEC_VERSION = 1
MODEL_DATA_DIR = "feature_store"  # the pyfunc's data_path inside the model, as on Databricks


@dataclass
class LookupSpec:
    """One resolved FeatureLookup: where its features come from and what they are called."""

    table_name: str
    lookup_key: list[str]
    feature_names: list[str]
    rename_outputs: dict[str, str] = field(default_factory=dict)
    timestamp_lookup_key: str | None = None
    lookback_window_seconds: float | None = None
    default_values: dict[str, Any] = field(default_factory=dict)
    table_version: int | None = None
    table_id: str | None = None
    primary_keys: list[str] = field(default_factory=list)
    timeseries_column: str | None = None

    def output_name(self, feature: str) -> str:
        """The column name ``feature`` gets in the training set."""
        return self.rename_outputs.get(feature, feature)

    @property
    def outputs(self) -> dict[str, str]:
        """Feature name → output column name, in lookup order."""
        return {f: self.output_name(f) for f in self.feature_names}


@dataclass
class FeatureSpec:
    """What a training set (and a model logged from it) looks up: saved as ``feature_spec.yaml``."""

    lookups: list[LookupSpec]
    source_columns: list[str]
    labels: list[str]
    exclude_columns: list[str]
    output_columns: list[str]
    data_types: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    serialization_version: int = SPEC_VERSION

    @property
    def feature_columns(self) -> list[str]:
        """Output names of the looked-up features."""
        return [o for lk in self.lookups for o in lk.outputs.values()]

    @property
    def model_input_columns(self) -> list[str]:
        """Columns the model is trained on: the training set's columns without the labels."""
        return [c for c in self.output_columns if c not in self.labels]

    @property
    def tables(self) -> dict[str, int | None]:
        """Feature table name → Delta version the training set read."""
        return {lk.table_name: lk.table_version for lk in self.lookups}

    @property
    def required_input_columns(self) -> list[str]:
        """Columns a scoring DataFrame must hold: lookup keys and timestamp keys not produced by a lookup."""
        produced = set(self.feature_columns)
        needed: list[str] = []
        for lk in self.lookups:
            for c in [*lk.lookup_key, *([lk.timestamp_lookup_key] if lk.timestamp_lookup_key else [])]:
                if c not in produced and c not in needed:
                    needed.append(c)
        return needed

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON-ready)."""
        return {
            "serialization_version": self.serialization_version,
            "created_at": self.created_at,
            "tables": [
                {"table_name": t, "version": v, "table_id": next(lk.table_id for lk in self.lookups if lk.table_name == t)}
                for t, v in self.tables.items()
            ],
            "feature_lookups": [asdict(lk) for lk in self.lookups],
            "source_columns": list(self.source_columns),
            "labels": list(self.labels),
            "exclude_columns": list(self.exclude_columns),
            "output_columns": list(self.output_columns),
            "model_input_columns": self.model_input_columns,
            "data_types": dict(self.data_types),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """The spec a :meth:`to_dict` produced."""
        version = data.get("serialization_version")
        if version != SPEC_VERSION:
            raise ValueError(f"feature spec version {version!r} is not supported (expected {SPEC_VERSION})")
        return cls(
            lookups=[LookupSpec(**lk) for lk in data["feature_lookups"]],
            source_columns=list(data["source_columns"]),
            labels=list(data["labels"]),
            exclude_columns=list(data["exclude_columns"]),
            output_columns=list(data["output_columns"]),
            data_types=dict(data.get("data_types", {})),
            created_at=data.get("created_at", ""),
        )

    def save(self, path: str | Path) -> Path:
        """Write the spec as YAML to ``path`` (a file, or a folder to hold ``feature_spec.yaml``)."""
        import yaml

        target = Path(path)
        if target.is_dir():
            target = target / SPEC_FILE
        target.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))
        return target

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        """Read a spec written by :meth:`save`."""
        import yaml

        target = Path(path)
        if target.is_dir():
            target = target / SPEC_FILE
        return cls.from_dict(yaml.safe_load(target.read_text()))


def yaml_safe(value: Any) -> Any:
    """``value`` as YAML can store it: numpy scalars as Python numbers, dates and datetimes as ISO strings."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        return value.item()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value
