"""The stream processors by name: the names of `pooler.route_table.PROCESSORS`, one implementation each.

A stream's processor is opened once, on its request-headers message, by the name of its route row (which
`AttemptProcessor.begin` checked is the name the cluster's filter sends; headers-only clusters send none). Never
by path: a retried attempt sees the :path its previous attempt rewrote (/v1 -> the Codex path). The
headers-only processors keep no state between phases, so one instance serves every stream (nothing allocated
per request); the body-reading ones keep the attempt's state across its phases, so each stream gets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from extproc.codex import CodexProcessor
from extproc.files import FilesProcessor
from extproc.first_event import FirstEventProcessor
from extproc.local import (
    KeyUsagePageProcessor,
    KeyUsageProcessor,
    ReadyProcessor,
    UsageProcessor,
    V1ModelsProcessor,
)
from extproc.media import V1AudioProcessor
from extproc.phases import StreamProcessor
from extproc.processor import AttemptProcessor
from extproc.v1 import V1Processor
from pooler import gateway_contract as gc
from pooler import route_table as rt
from pooler.v1.models import V1Route

Opener = Callable[[float], StreamProcessor]
"""Opens a stream's processor; the argument is the hold deadline in seconds its filter names (0: none)."""


def openers(gateway: AttemptProcessor) -> dict[str, Opener]:
    """Processor name -> how a stream gets its processor."""
    codex = CodexProcessor(gateway)
    ready = ReadyProcessor()
    usage = UsageProcessor(gateway)
    models = V1ModelsProcessor(gateway)
    key_usage = KeyUsageProcessor(gateway)
    key_usage_page = KeyUsagePageProcessor()
    pins = gateway.surface.pins
    return {
        rt.PROCESSOR_CODEX: lambda _: codex,
        rt.PROCESSOR_READY: lambda _: ready,
        rt.PROCESSOR_USAGE: lambda _: usage,
        rt.PROCESSOR_V1_MODELS: lambda _: models,
        rt.PROCESSOR_KEY_USAGE: lambda _: key_usage,
        rt.PROCESSOR_KEY_USAGE_PAGE: lambda _: key_usage_page,
        gc.PROCESSOR_FIRST_EVENT: lambda hold: FirstEventProcessor(gateway, hold),
        gc.PROCESSOR_V1_RESPONSES: lambda _: V1Processor(gateway, V1Route.RESPONSES),
        gc.PROCESSOR_V1_CHAT: lambda _: V1Processor(gateway, V1Route.CHAT),
        gc.PROCESSOR_FILES: lambda _: FilesProcessor(gateway, pins, openai=False),
        gc.PROCESSOR_V1_FILES: lambda _: FilesProcessor(gateway, pins, openai=True),
        gc.PROCESSOR_V1_AUDIO: lambda _: V1AudioProcessor(gateway),
    }


class Processors:
    """The registry of one ext_proc process."""

    __slots__ = ("_openers",)

    def __init__(self, gateway: AttemptProcessor) -> None:
        self._openers: Mapping[str, Opener] = openers(gateway)
        missing = set(rt.PROCESSORS) - set(self._openers)
        if missing:  # a route row naming a processor nobody implements would be refused at run time
            raise ValueError(f"no stream processor for {sorted(missing)}")

    def names(self) -> frozenset[str]:
        return frozenset(self._openers)

    def open(self, name: str, hold_seconds: float = 0.0) -> StreamProcessor:
        """The processor of one stream; every route row names one of the route table's processors, and each of
        those is registered (checked above)."""
        return self._openers[name](hold_seconds)
