"""Account-bound session state: what the upstream accepts only on the account that produced it, and how the
gateway keeps it there (docs/ARCHITECTURE.md "Account-bound session state").

Turn-state. The upstream issues `x-codex-turn-state` (a response header, and on the websocket 101) and Codex
echoes it on the later requests of the same turn: it keeps the first token of a turn, so after a session moved
to another account the client still echoes the old account's token. Forwarded there, it would tell the upstream
that two accounts serve one conversation. The gateway does not read responses (one ext_proc message per
attempt), so it learns the issuer at the token's first echo: the session's sticky account then - the account
that answered the session's previous request, which is where the token came from. A token first echoed with no
sticky account has no known issuer and is never forwarded. Only a keyed hash of the token is kept
(`TURN_STATE_PURPOSE`), in memory.

Sealed items. A body carrying `encrypted_content` (reasoning or compaction items; Envoy's request scanner flags
it) can only be served by the account that sealed them: any other answers 400 `invalid_encrypted_content`. So
such a request keeps its sticky account through a demotion (a recent 5xx or connect failure, seconds long),
which would otherwise move it where it can only fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pooler.selection.eligibility import ineligibility
from pooler.selection.types import AccountCandidate, PoolPolicy, SelectionRequest

TURN_STATE_PURPOSE = "turn_state"
TURN_STATE_TTL_SECONDS = 4 * 3600.0
"""How long an issuer is remembered: a turn lasts minutes; a websocket connection at most an hour."""
MAX_TURN_STATES = 50_000
"""Bound on remembered tokens (~150 bytes each); beyond it the oldest are forgotten (their echo is then dropped:
the safe side)."""


def forwards_turn_state(issuer: int | None, picked: int) -> bool:
    """A turn-state goes upstream only to the account that issued it."""
    return issuer is not None and issuer == picked


@dataclass(slots=True)
class TurnStateIssuers:
    """Keyed token hash -> (issuing account or None when unknown, expiry). Insertion order is expiry order (one
    fixed TTL), so expiry and the size bound pop from the front."""

    entries: dict[str, tuple[int | None, float]] = field(default_factory=dict)

    def issuer(self, token_hash: str, session_account: int | None, now: float) -> int | None:
        """The account that issued this token: the one learnt at its first echo, else (this is the first echo)
        `session_account`, the session's sticky account before this request's pick - recorded either way."""
        seen = self.entries.get(token_hash)
        if seen is not None and seen[1] > now:
            return seen[0]
        self.entries.pop(token_hash, None)
        self.entries[token_hash] = (session_account, now + TURN_STATE_TTL_SECONDS)
        self._expire(now)
        return session_account

    def _expire(self, now: float) -> None:
        entries = self.entries
        while entries:
            oldest, (_, expires_at) = next(iter(entries.items()))
            if expires_at > now and len(entries) <= MAX_TURN_STATES:
                break
            del entries[oldest]


def keeps_sealed_session(candidate: AccountCandidate, policy: PoolPolicy, request: SelectionRequest) -> bool:
    """Whether a request with sealed items stays on its sticky account `candidate` although selection would not
    pick it: only when a demotion is all that stands against it (a spent, paused or re-auth account, one at
    its concurrency cap or already tried for this request is not kept)."""
    if candidate.demoted_until is None or candidate.demoted_until <= request.now:
        return False
    return ineligibility(replace(candidate, demoted_until=None), policy, request) is None
