"""The request-end announcements fit PostgreSQL's notification payload limit and lose no id."""

from __future__ import annotations

import uuid

from pooler.versions import NOTIFY_PAYLOAD_LIMIT, ended_payloads


def test_ids_are_split_into_payloads_under_the_limit_in_order() -> None:
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    payloads = ended_payloads(ids)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= NOTIFY_PAYLOAD_LIMIT for p in payloads)
    assert [i for p in payloads for i in p.split()] == ids


def test_no_ids_no_payload_and_one_id_one_payload() -> None:
    assert ended_payloads([]) == []
    assert ended_payloads(["a"]) == ["a"]
