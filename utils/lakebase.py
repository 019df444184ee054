"""The Lakebase online store on Databricks: got or created, then waited for until it is available.

What ``utils.platform.online_store_spec`` builds on Databricks (``MLOPS_LAKEBASE=true``) with the platform's
feature client; ``utils.features.lakebase_online_store`` is the same with the client picked for you. Imports only
``utils.config`` (inside the function); nothing happens at import time.
"""

from __future__ import annotations

import time
from typing import Any

LAKEBASE_READY_TIMEOUT_S = 900.0


def online_store(client: Any, name: str | None = None, timeout_s: float = LAKEBASE_READY_TIMEOUT_S) -> Any:
    """The Lakebase online store ``name`` (default ``get_config().online_store_name``) of feature client ``client``.

    Gets it, or creates it with the smallest capacity (``CU_1``), then waits until its state is ``AVAILABLE``
    (see ``utils.features.lakebase_online_store``, which calls this with the platform's feature client).

    Raises:
        PermissionError: the workspace refused to create the store (one line: the store and the permission).
        RuntimeError: the store is STOPPED or DELETING (waiting would not help), or vanished while starting.
        TimeoutError: the store is not available after ``timeout_s`` seconds.
    """

    from databricks.sdk.errors import PermissionDenied

    from utils.config import get_config

    store_name = name or get_config().online_store_name
    store = client.get_online_store(name=store_name)
    if store is None:
        try:
            store = client.create_online_store(name=store_name, capacity="CU_1")
        except PermissionDenied as exc:
            reason = str(exc).split(". Config: ")[0].rstrip(".")  # the workspace's reason, not the SDK's config dump
            raise PermissionError(
                f"cannot create Lakebase online store {store_name!r}: you lack the permission to create Lakebase "
                f"database instances in this workspace ({reason}); ask a workspace admin to grant it or to create "
                "the store, or set MLOPS_LAKEBASE_STORE to a store you can use") from None
    deadline = time.monotonic() + timeout_s
    while True:
        if store is None:
            raise RuntimeError(f"online store {store_name!r} disappeared while it was starting (deleted by someone "
                               "else?): rerun to create it again")
        state = str(getattr(store.state, "value", store.state))  # STARTING, not the enum's State.STARTING
        if state == "AVAILABLE":
            return store
        if state in ("STOPPED", "DELETING"):  # waiting will not make it available
            raise RuntimeError(f"online store {store_name!r} is {state}: start it in Compute → Lakebase (or wait "
                               "until it is deleted), then rerun")
        if time.monotonic() > deadline:
            raise TimeoutError(f"online store {store_name!r} is {state} after {timeout_s:.0f} s: "
                               "check it in Compute → Lakebase, then rerun")
        time.sleep(10)
        store = client.get_online_store(name=store_name)
