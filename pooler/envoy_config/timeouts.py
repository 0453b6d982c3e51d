"""Streaming timeouts and the retry policy every upstream route shares."""

from __future__ import annotations

from typing import Any

from pooler import gateway_contract as gc
from pooler.route_table import SSE_IDLE_TIMEOUT, WS_IDLE_TIMEOUT

# An attempt that sends nothing for this long is reset (and retried on another account while no byte has
# reached the client); long enough for a slow first token, short enough to fail over a stuck account.
PER_TRY_IDLE_TIMEOUT = "120s"
RETRY_BASE_INTERVAL = "0.01s"  # failover is to another account: no reason to back off long
RETRY_MAX_INTERVAL = "0.05s"


__all__ = ["SSE_IDLE_TIMEOUT", "WS_IDLE_TIMEOUT", "retry_policy"]


def retry_policy(num_retries: int, statuses: tuple[int, ...] = gc.RETRIABLE_STATUS_CODES) -> dict[str, Any]:
    return {
        "retry_on": gc.RETRY_ON,
        "num_retries": num_retries,
        "retriable_status_codes": list(statuses),
        "per_try_idle_timeout": PER_TRY_IDLE_TIMEOUT,
        "retry_back_off": {"base_interval": RETRY_BASE_INTERVAL, "max_interval": RETRY_MAX_INTERVAL},
    }
