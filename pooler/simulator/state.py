"""Everything the simulator remembers, in one object owned by the aiohttp app (single event loop: no locks)."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pooler.simulator.accounts import Account
from pooler.simulator.clock import SimClock
from pooler.simulator.faults import FaultBook
from pooler.simulator.journal import Journal
from pooler.simulator.tokens import ACCESS_TTL_SECONDS, Identity

DEFAULT_TEXT = "Hello from the Codex simulator. The pool works."


@dataclass
class SimConfig:
    secret: str
    accounts: int = 3
    default_plan: str = "plus"
    text: str = DEFAULT_TEXT
    # Output tokens per second; 0 means flat out.
    token_rate: float = 0.0
    reasoning_tokens: int = 0
    access_ttl: float = ACCESS_TTL_SECONDS
    # Device codes approve themselves on this poll (0: only via the control API or the /codex/device page).
    device_auto_approve_polls: int = 2
    # The account a browser/device login signs in as when the request does not name one.
    default_login_account: str = "acct-1"

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("secret")
        return out

    def update(self, spec: dict[str, Any]) -> None:
        for key, value in spec.items():
            if key == "secret" or key not in self.__dataclass_fields__:
                raise ValueError(f"unknown or read-only setting: {key}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value))


@dataclass
class PendingCode:
    """An authorization code waiting for its exchange (browser or device flow)."""

    account_id: str
    redirect_uri: str
    code_challenge: str
    used: bool = False


@dataclass
class DeviceAuth:
    device_auth_id: str
    user_code: str
    polls: int = 0
    account_id: str | None = None  # set on approval
    code: str | None = None
    code_verifier: str | None = None
    code_challenge: str | None = None


@dataclass
class SimState:
    config: SimConfig
    clock: SimClock = field(default_factory=SimClock)
    accounts: dict[str, Account] = field(default_factory=dict)
    faults: FaultBook = field(default_factory=FaultBook)
    journal: Journal = field(default_factory=Journal)
    spent_refresh_tokens: set[str] = field(default_factory=set)
    codes: dict[str, PendingCode] = field(default_factory=dict)
    devices: dict[str, DeviceAuth] = field(default_factory=dict)
    scripts: deque[dict[str, Any]] = field(default_factory=deque)
    response_accounts: dict[str, str] = field(default_factory=dict)
    """Response id -> the account that produced it (`previous_response_id` is valid only there)."""
    turn_states: dict[str, str] = field(default_factory=dict)
    """`x-codex-turn-state` token -> the account that issued it."""
    challenge_cookies: dict[str, str] = field(default_factory=dict)
    """Cloudflare-like `__cf_bm` values handed out (usage and refresh answers) -> the account each was set for."""

    def __post_init__(self) -> None:
        self.initial_config = replace(self.config)
        self.seed_accounts()

    def seed_accounts(self) -> None:
        for i in range(1, self.config.accounts + 1):
            self.account(Identity(f"acct-{i}", self.config.default_plan))

    def now(self) -> float:
        return self.clock.now()

    def account(self, ident: Identity) -> Account:
        """The named account, created with its plan's defaults on first sight."""
        acct = self.accounts.get(ident.account_id)
        if acct is None:
            acct = Account.create(ident)
            self.accounts[acct.account_id] = acct
        return acct

    def reset(self) -> None:
        """Back to the state right after start-up (same secret and CLI settings)."""
        self.config = replace(self.initial_config)
        self.clock = SimClock()
        self.accounts.clear()
        self.faults = FaultBook()
        self.journal = Journal()
        self.spent_refresh_tokens.clear()
        self.codes.clear()
        self.devices.clear()
        self.scripts.clear()
        self.response_accounts.clear()
        self.turn_states.clear()
        self.challenge_cookies.clear()
        self.seed_accounts()
