"""gRPC services: the ExternalProcessor stream loop, the AccessLogService receiver and health.

The stream loop only dispatches: it opens the stream's processor from the registry (extproc/processors.py) on the
request-headers message and hands every message to the hook of its kind (extproc/phases.py); the decisions live
in the processors and `processor.AttemptProcessor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from extproc import responses
from extproc.accesslog import AccessLogHandler
from extproc.admission import Deferred
from extproc.phases import LATER_PHASES, PASS_THROUGH, Attempt, Exhausted
from extproc.processor import AttemptProcessor
from extproc.processors import Processors
from extproc.shared import SharedState
from pooler import gateway_contract as gc

log = logging.getLogger(__name__)

# How long a stream that Envoy ended waits for the reset that follows before returning (see `Process`). Envoy's
# reset reaches the handler within ~12 ms under load (measured: p50 0.14 ms, p99 2.5 ms, max 12 ms over 19k
# streams, loaded 2-core box); an Envoy that closes gracefully (half-close only) gets its status this much later.
RESET_GRACE_S = 0.1


class ExternalProcessorService(ep_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, processor: AttemptProcessor, shared: SharedState | None = None) -> None:
        self.gateway = processor
        self.processors = Processors(processor)
        self.shared = shared
        """Replica mode (extproc/shared.py): shared limits and stickiness around the processor."""

    async def Process(
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ep.ProcessingResponse]:
        metadata = context.invocation_metadata()
        # Body-reading clusters name their processor in the filter's gRPC initial metadata (headers-only: none).
        named = _processor_name(metadata)
        processor = PASS_THROUGH
        messages = request_iterator.__aiter__()
        pending: asyncio.Future[ep.ProcessingRequest] | None = None
        while True:
            held_until = processor.held_until
            if held_until is None and pending is None:
                try:
                    request = await messages.__anext__()
                except StopAsyncIteration:
                    break
            else:
                # A processor holds answers (extproc/first_event.py): wait for the next message no longer than its
                # deadline, then give the held answers as they are. The read is never cancelled (a cancelled
                # read would end the call); it is awaited again after the expiry.
                if pending is None:
                    pending = asyncio.ensure_future(messages.__anext__())
                timeout = None if held_until is None else max(0.0, held_until - asyncio.get_running_loop().time())
                done, _ = await asyncio.wait((pending,), timeout=timeout)
                if not done:
                    for answer in processor.expire():
                        yield answer
                    if processor.ended:
                        pending.cancel()
                        return
                    continue
                try:
                    request = pending.result()
                except StopAsyncIteration:
                    break
                finally:
                    pending = None
            kind = request.WhichOneof("request")
            if kind == "request_headers":
                try:
                    prepared = await self.shared.before(request) if self.shared is not None else None
                    if isinstance(prepared, ep.ProcessingResponse):  # refused by a limit shared across replicas
                        yield prepared
                        continue
                    attempt = self.gateway.begin(request, named)
                    if isinstance(attempt, Attempt):
                        # Picked once per stream: the row's processor, which `begin` checked is the one named.
                        processor = self.processors.open(attempt.route.processor, _hold_seconds(metadata))
                        decision = processor.request_headers(attempt)
                        if isinstance(decision, Deferred):  # waiting for an admission slot (bounded wait)
                            decision = await decision.resolve()
                        if isinstance(decision, Exhausted):
                            decision = await self.gateway.conclude(decision)
                        processor.routed(attempt, decision)
                    else:
                        decision = attempt  # refused before any processor: no route row, another's, not ready
                    if prepared is not None and self.shared is not None:
                        await self.shared.after(prepared)
                    yield decision
                except Exception:
                    # Fail closed with a generic 500 (Envoy maps it to a JSON 503); the traceback names no
                    # header values, and the request never reaches the upstream undecided.
                    log.exception("request_headers failed")
                    yield responses.error("internal_error")
            elif kind in LATER_PHASES:
                # The oneof's field names are the hooks' names (extproc/phases.py).
                answers = getattr(processor, kind)(getattr(request, kind))
                if isinstance(answers, tuple):
                    for answer in answers:
                        yield answer
                else:
                    yield answers
                if processor.ended:
                    # Decided: end the stream, so Envoy passes the rest of the response without the ext_proc
                    # (it injects any chunk it sent meanwhile unchanged: ProcessorState::clearAsyncState).
                    return
        # By default Envoy ends every ext_proc stream with END_STREAM immediately followed by RST_STREAM
        # (ExternalProcessorStreamImpl::close: closeStream() then resetStream()). Returning now makes grpc.aio start
        # the final-status batch on a call that is being reset: the batch fails, grpc.aio ignores the error, and
        # grpcio (1.85, grpc/grpc#43360) never frees the batch's gpr_malloc'd grpc_op array - 80 bytes (a 96-byte
        # glibc chunk) per stream, the ~0.9 MiB per 10,000 requests of native heap growth in docs/BENCHMARKS.md.
        # Waiting lets gRPC deliver the reset first: it cancels this handler and no status batch is ever started.
        # Our own Envoy config turns on graceful close (no reset; it waits for our status) and says so.
        if not _graceful_close(metadata):
            await asyncio.sleep(RESET_GRACE_S)


def _processor_name(invocation_metadata: Any) -> str | None:
    for key, value in invocation_metadata or ():
        if key == gc.PROCESSOR_METADATA_KEY:
            return value if isinstance(value, str) else bytes(value).decode()
    return None


def _hold_seconds(invocation_metadata: Any) -> float:
    """The hold deadline a first-event filter names (gc.HOLD_METADATA_KEY, milliseconds); 0 when none."""
    for key, value in invocation_metadata or ():
        if key == gc.HOLD_METADATA_KEY:
            text = value if isinstance(value, str) else bytes(value).decode()
            return int(text) / 1000 if text.isdigit() else 0.0
    return 0.0


def _graceful_close(invocation_metadata: Any) -> bool:
    return any(
        key == gc.STREAM_CLOSE_METADATA_KEY and value == gc.STREAM_CLOSE_GRACEFUL
        for key, value in invocation_metadata or ()
    )


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(
        self, handler: AccessLogHandler, announce: Callable[[list[str]], Awaitable[None]] | None = None
    ) -> None:
        self.handler = handler
        self.announce = announce
        """Tells the processes that picked for them which requests just ended (a receiver of its own, or a
        replica): their slots are freed without waiting for the rows to be written and looked up."""
        if announce is not None:
            handler.ended = []
        self.draining = False
        """Set by a stopping replica: each stream ends right after its next message (Envoy sends the next flush
        on a new stream, to a replica still in rotation), instead of being cut mid-flight at shutdown."""
        self.open_streams = 0
        self._all_ended = asyncio.Event()

    async def StreamAccessLogs(
        self, request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage], context: grpc.aio.ServicerContext
    ) -> als_pb2.StreamAccessLogsResponse:
        self.open_streams += 1
        self._all_ended.clear()
        try:
            async for message in request_iterator:
                self.handler.handle(message)
                ended = self.handler.ended
                if ended and self.announce is not None:
                    self.handler.ended = []
                    await self.announce(ended)
                if self.draining:
                    break
        finally:
            self.open_streams -= 1
            if not self.open_streams:
                self._all_ended.set()
        return als_pb2.StreamAccessLogsResponse()

    async def wait_ended(self, timeout: float) -> None:
        """Until every open stream has ended (each after its next message) or `timeout`: an Envoy worker with no
        traffic sends nothing, and its idle stream is then closed by the server's stop (nothing in flight)."""
        if not self.open_streams:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ended.wait(), timeout)
