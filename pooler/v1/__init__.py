"""The OpenAI-compatible `/v1` surface, as pure translators onto the Codex backend (no I/O in this package).

One small module per direction, like Envoy AI Gateway's `translator/<in>_<out>`:

- `responses_request`  /v1/responses body            -> Codex backend body
- `chat_request`       /v1/chat/completions body     -> Codex backend body
- `chat_stream`        Codex SSE events              -> chat.completion.chunk SSE (incremental)
- `responses_stream`   Codex SSE events              -> /v1/responses SSE (pass-through + terminal guard)
- `collect`            Codex SSE events              -> one Responses object / one chat.completion
- `errors`             OpenAI-shaped errors, upstream error bodies, mid-stream error events
- `models`             /v1 path classification, /v1/models listings
- `sse`                SSE framing over arbitrary byte chunk boundaries

The ext_proc's /v1 processor (extproc/v1*.py) calls these; they never see a socket, a key or a database.
"""
