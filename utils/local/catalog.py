"""The local stand-in for Unity Catalog's table namespace: Spark's session catalog, kept in memory.

Tables are Delta tables under the warehouse folder (``<warehouse>/<schema>.db/<table>``, and
``<warehouse>/<table>`` for the ``default`` schema); the Delta
transaction log is the only source of truth, so any number of processes (two notebooks, a test and
its worker processes) share them without a metastore lock. Each session registers the tables it
finds on disk (:func:`register_tables`), and catalog names resolve through
``mlops.local.SessionCatalogAlias`` (:func:`alias_catalog`), so ``catalog.schema.table`` works as on
Databricks. Every catalog name shares the same schemas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from utils.local.jvm import ALIAS_CLASS

_IDENT = re.compile(r"^[A-Za-z0-9_]+$")

__all__ = ["alias_catalog", "register_tables"]

_ALIASED: set[tuple[str, str]] = set()  # (Connect session id, catalog conf key) pairs this process has set


def alias_catalog(spark: Any, name: str) -> None:
    """Make ``name`` a catalog of this session (an alias of the session catalog); idempotent.

    Raises ``ValueError`` for a name that is not letters, digits and underscores.
    """
    if not _IDENT.match(name or ""):
        raise ValueError(f"invalid catalog name {name!r}: use letters, digits and underscores")
    key = f"spark.sql.catalog.{name.lower()}"
    session = getattr(spark, "session_id", None)  # a Connect session's id: its SQL conf is its own
    if name.lower() != "spark_catalog" and (session, key) not in _ALIASED:
        if spark.conf.get(key, None) != ALIAS_CLASS:
            spark.conf.set(key, ALIAS_CLASS)
        if session is not None:  # remembered: every table operation asks, and each conf round trip costs ~50 ms
            _ALIASED.add((session, key))


def register_tables(spark: Any, warehouse: Path) -> list[str]:
    """Register every Delta table under ``warehouse`` that this session does not know yet.

    Returns the ``schema.table`` names registered. A folder without ``_delta_log`` is not a table
    and is left alone.
    """
    added: list[str] = []
    if not warehouse.is_dir():
        return added
    known_schemas: set[str] | None = None
    logs = [(log, log.parent.parent.name[: -len(".db")]) for log in sorted(warehouse.glob("*.db/*/_delta_log"))]
    logs += [(log, "default") for log in sorted(warehouse.glob("*/_delta_log"))]  # Spark keeps `default` at the top
    for log, schema in logs:
        table_dir = log.parent
        table = table_dir.name
        if not (_IDENT.match(schema) and _IDENT.match(table)) or not any(log.glob("*.json")):
            continue
        if spark.catalog.tableExists(f"spark_catalog.{schema}.{table}"):
            continue
        if known_schemas is None:
            known_schemas = {r[0] for r in spark.sql("SHOW SCHEMAS IN spark_catalog").collect()}
        if schema not in known_schemas:
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS spark_catalog.`{schema}`")
            known_schemas.add(schema)
        location = table_dir.resolve().as_uri()
        spark.sql(f"CREATE TABLE IF NOT EXISTS spark_catalog.`{schema}`.`{table}` USING delta LOCATION '{location}'")
        added.append(f"{schema}.{table}")
    return added
