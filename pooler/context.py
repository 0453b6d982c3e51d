"""Everything a process needs to talk to the database and open secrets, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pooler.config import Config, load_config
from pooler.crypto.hashing import KeyedHasher
from pooler.crypto.keyring import ServerSecrets, load_server_secrets
from pooler.crypto.secretbox import SecretBox
from pooler.db import make_engine, make_session_factory


@dataclass(frozen=True)
class CoreContext:
    config: Config
    engine: Engine
    session_factory: sessionmaker[Session]
    secrets: ServerSecrets
    box: SecretBox
    hasher: KeyedHasher

    def dispose(self) -> None:
        self.engine.dispose()


def open_context(config: Config | None = None, **engine_kwargs: object) -> CoreContext:
    """Loads config and secrets (raising ConfigError listing every problem) and creates the engine."""
    config = config or load_config()
    server_secrets = load_server_secrets(config)
    engine = make_engine(config.database_url, **engine_kwargs)
    return CoreContext(
        config=config,
        engine=engine,
        session_factory=make_session_factory(engine),
        secrets=server_secrets,
        box=SecretBox(server_secrets.keyring),
        hasher=KeyedHasher(server_secrets.pepper),
    )
