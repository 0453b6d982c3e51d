"""The gateway's gRPC ext_proc (one synchronous message per upstream attempt) and access-log receiver.

A thin process package over the core (`pooler`): `server.py` owns the gRPC stream loops, `processor.py` the
per-attempt decision, `responses.py` pure response builders, `accesslog.py` evidence, `writer.py` batched
writes, `reloader.py` the snapshot refresh, `app.py` the wiring. Start with `python -m extproc`.
"""
