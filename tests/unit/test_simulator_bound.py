"""The simulator's account-bound state (pooler/simulator/bound.py): sealed items, response ids, turn-state tokens."""

from __future__ import annotations

from typing import Any

from pooler.simulator.bound import answer_turn_state, check_request, seal, unseals, wants_encrypted_reasoning

SECRET = "unit-secret"


def test_sealed_content_opens_only_on_its_account_and_secret() -> None:
    sealed = seal(SECRET, "acct-1")
    assert sealed.startswith("gAAAA") and sealed != seal(SECRET, "acct-1")
    assert unseals(SECRET, "acct-1", sealed)
    assert not unseals(SECRET, "acct-2", sealed)
    assert not unseals("other-secret", "acct-1", sealed)
    for garbage in ("", "gAAAAB", sealed[:-1], sealed + "0", "not sealed", None, 7, {"a": 1}):
        assert not unseals(SECRET, "acct-1", garbage)


def test_previous_response_id_is_valid_only_on_the_account_that_produced_it() -> None:
    owners = {"resp_a": "acct-1"}
    assert check_request({"previous_response_id": "resp_a"}, "acct-1", owners, SECRET) is None
    for account, previous in (("acct-2", "resp_a"), ("acct-1", "resp_unknown"), ("acct-1", 12)):
        error = check_request({"previous_response_id": previous}, account, owners, SECRET)
        assert error is not None
        assert error.body() == {
            "error": {
                "message": f"Previous response with id '{previous}' not found.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        }


def test_encrypted_reasoning_and_compaction_items_are_bound_to_their_account() -> None:
    mine, theirs = seal(SECRET, "acct-1"), seal(SECRET, "acct-2")
    items: list[Any] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": mine},
        {"type": "compaction", "encrypted_content": mine},
        {"type": "reasoning", "id": "rs_2", "summary": []},  # no encrypted content: nothing to verify
        "not an item",
        # A message whose text looks sealed is not account-bound state.
        {"type": "message", "encrypted_content": theirs},
    ]
    assert check_request({"input": items}, "acct-1", {}, SECRET) is None
    error = check_request({"input": items}, "acct-2", {}, SECRET)
    assert (
        error is not None and error.code == "invalid_encrypted_content" and error.param == "input[1].encrypted_content"
    )
    assert error.body()["error"]["type"] == "invalid_request_error"
    forged = [{"type": "compaction", "encrypted_content": "gAAAAB-forged"}]
    forged_error = check_request({"input": forged}, "acct-1", {}, SECRET)
    assert forged_error is not None and forged_error.code == "invalid_encrypted_content"
    assert check_request({"input": "plain text"}, "acct-1", {}, SECRET) is None


def test_previous_response_is_checked_before_items() -> None:
    body = {"previous_response_id": "resp_b", "input": [{"type": "reasoning", "encrypted_content": "x"}]}
    error = check_request(body, "acct-1", {"resp_b": "acct-2"}, SECRET)
    assert error is not None and error.code == "previous_response_not_found"


def test_encrypted_reasoning_is_sent_only_when_included() -> None:
    assert wants_encrypted_reasoning({"include": ["reasoning.encrypted_content"]})
    assert not wants_encrypted_reasoning({"include": []})
    assert not wants_encrypted_reasoning({"include": "reasoning.encrypted_content"})
    assert not wants_encrypted_reasoning({})


def test_turn_state_is_kept_on_its_account_and_reissued_elsewhere() -> None:
    issuers: dict[str, str] = {}
    first = answer_turn_state(None, "acct-1", issuers)
    assert first.startswith("ts_") and issuers == {first: "acct-1"}
    assert answer_turn_state(first, "acct-1", issuers) == first
    moved = answer_turn_state(first, "acct-2", issuers)
    assert moved != first and issuers[moved] == "acct-2" and issuers[first] == "acct-1"
    unknown = answer_turn_state("ts_made_up", "acct-1", issuers)
    assert unknown not in ("ts_made_up", first) and "ts_made_up" not in issuers
