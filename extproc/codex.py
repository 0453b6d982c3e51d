"""The Codex processor: the request-headers decision of every route the upstream serves. Headers-only, so one
instance serves every stream; the body-reading processors (extproc/v1.py, files.py, media.py) extend it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from extproc.phases import Attempt, Decision, StreamProcessor

if TYPE_CHECKING:
    from extproc.processor import AttemptProcessor


class CodexProcessor(StreamProcessor):
    __slots__ = ("gateway",)

    def __init__(self, gateway: AttemptProcessor) -> None:
        self.gateway = gateway

    def request_headers(self, attempt: Attempt) -> Decision:
        refused = self.gateway.authenticate(attempt)
        return refused if refused is not None else self.gateway.decide(attempt)
