"""Who is acting: carried into every audit event a service writes."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from pooler.states import ActorType


@dataclass(frozen=True)
class Actor:
    type: ActorType
    label: str | None = None


def cli_actor() -> Actor:
    """The CLI acts as the local OS user (best effort: containers may have no passwd entry)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return Actor(ActorType.CLI, user)


SYSTEM = Actor(ActorType.SYSTEM, "system")
