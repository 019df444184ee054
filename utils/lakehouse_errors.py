"""How table operations fail: checked table names, errors that name the table and the fix, retried commits."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from utils.platform.runtime import use_catalog

MAX_ATTEMPTS = 10
IDENT = re.compile(r"^[A-Za-z0-9_]+$")
_CONFLICT_MARKERS = (
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
    "ProtocolChangedException", "DELTA_CONCURRENT", "DELTA_METADATA_CHANGED", "DELTA_PROTOCOL_CHANGED",
)
T = TypeVar("T")


class LakehouseError(Exception):
    """A table operation failed; the message names the table and the fix."""


class TableNotFoundError(LakehouseError, LookupError):
    """The named table does not exist."""

    def __init__(self, name: str, where: str = "") -> None:
        super().__init__(
            f"table {name!r} does not exist{where}; check the name with list_tables() or exists(), "
            "or create it with write() or merge()"
        )


class VersionNotFoundError(LakehouseError, LookupError):
    """The asked version or timestamp is outside the table's history."""


class VersionVacuumedError(VersionNotFoundError):
    """The asked version is still in the table's history, but VACUUM removed its data files."""


class SchemaMismatchError(LakehouseError, ValueError):
    """The data's columns or types differ from the table's."""


class CommitConflict(Exception):
    """A concurrent writer won the race; the operation may be retried."""


def parse_name(name: str) -> tuple[str, str, str]:
    """Split ``catalog.schema.table`` into its parts (lower case, as Unity Catalog stores them).

    Raises ``ValueError`` for anything but three identifiers of letters, digits and underscores.
    """
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3 or not all(IDENT.match(p) for p in parts):
        raise ValueError(
            f"invalid table name {name!r}: expected three dot-separated identifiers "
            "'catalog.schema.table' made of letters, digits and underscores, e.g. 'workspace.mlops.orders'"
        )
    catalog, schema, table = (p.lower() for p in parts)
    return catalog, schema, table


def full_name(name: str) -> str:
    """``name`` checked and lower-cased, its catalog in use (locally the alias answers to it)."""
    catalog, schema, table = parse_name(name)
    use_catalog(catalog)
    return f"{catalog}.{schema}.{table}"


def quoted_name(name: str) -> str:
    """``name`` as SQL quotes it: ```catalog`.`schema`.`table```."""
    return ".".join(f"`{p}`" for p in full_name(name).split("."))


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, LakehouseError):  # a nested helper already retried and gave up: do not repeat the write
        return False
    if isinstance(exc, CommitConflict) or type(exc).__name__ == "CommitFailedError":
        return True
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _CONFLICT_MARKERS)


def with_retries(what: str, fn: Callable[[], T]) -> T:
    """Run ``fn``, retrying on commit conflicts with jittered exponential backoff."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return fn()
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            if attempt == MAX_ATTEMPTS:
                raise LakehouseError(
                    f"{what} gave up after {MAX_ATTEMPTS} attempts: concurrent writers kept committing first "
                    f"(last error: {exc}); nothing was written, run it again or write less concurrently"
                ) from exc
            time.sleep(min(2.0, 0.05 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
