"""An attempt another replica routed is attributed from its request's tried list (replica mode) and learnt with the
same per-account back-off as an attempt this process routed: one path, `GatewayState.learn`, for both."""

from __future__ import annotations

from typing import Any, cast

import pytest

from extproc.accesslog import AccessLogHandler
from extproc.state import GatewayState
from tests.unit.test_extproc_memory import _downstream, _message, _upstream


def _demotions(routed_here: bool) -> list[float]:
    state = GatewayState(cast(Any, None))  # no snapshot: base demotion 30 s
    handler = AccessLogHandler(state, attribute_late=not routed_here)
    for n in range(3):
        rid = f"r{n}"
        if routed_here:
            state.start(rid, 7, 1000.0)
        handler.handle(_message(_upstream(rid, 500), _downstream(rid, [7], status=500)))
    return [effect.demoted_until - at for effect, at in state.pending.effects if effect.demoted_until is not None]


def test_late_attributed_failures_back_off_like_routed_ones() -> None:
    assert _demotions(routed_here=False) == pytest.approx([30.0, 60.0, 120.0], abs=0.5)
    assert _demotions(routed_here=True) == pytest.approx([30.0, 60.0, 120.0], abs=0.5)
