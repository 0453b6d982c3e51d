"""Run by tests as a second process: N threads call refresh_account for one account at a given wall time.

    python -m tests.support.refresh_burst DATABASE_URL ACCOUNT_ID THREADS START_AT_UNIX SEEN_EPOCH

Prints one JSON list of {outcome, epoch, token_fp} (a fingerprint, never the token). The keyring comes from
POOLER_SECRET_KEYS like any pooler process.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time

from pooler.crypto.keyring import parse_keyring
from pooler.crypto.secretbox import SecretBox
from pooler.db import make_engine, make_session_factory
from pooler.services.refresh import RefreshDeps, RefreshResult, make_http_client, refresh_account


def fingerprint(token: str | None) -> str | None:
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()[:12]


def burst(deps: RefreshDeps, account_id: int, threads: int, start_at: float, seen_epoch: int) -> list[RefreshResult]:
    results: list[RefreshResult] = []
    lock = threading.Lock()

    def worker() -> None:
        time.sleep(max(0.0, start_at - time.time()))  # all threads of both processes fire at one instant
        result = refresh_account(deps, account_id, seen_epoch=seen_epoch)
        with lock:
            results.append(result)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    return results


def main() -> int:
    import os

    url, account_id, threads, start_at, seen_epoch = sys.argv[1:6]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = make_engine(url, pool_size=30, max_overflow=10) if "postgresql" in url else make_engine(url)
    box = SecretBox(parse_keyring(os.environ["POOLER_SECRET_KEYS"]))
    with make_http_client() as http:
        deps = RefreshDeps(make_session_factory(engine), box, http)
        results = burst(deps, int(account_id), int(threads), float(start_at), int(seen_epoch))
    print(
        json.dumps([{"outcome": r.outcome, "epoch": r.epoch, "token_fp": fingerprint(r.access_token)} for r in results])
    )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
