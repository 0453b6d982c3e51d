"""Exception hierarchy of the core.

PoolerError
├── ConfigError        invalid or missing environment configuration (reported all at once)
├── SecretBoxError     a secret could not be sealed or opened (tamper, unknown key id, bad keyring)
├── AuthJsonError      an auth.json file was rejected by the importer (message is safe to show)
└── NotFoundError      a named object (pool, key, account) does not exist

Messages of these errors are written to be shown to an operator as is: they never contain secrets.
"""

from __future__ import annotations


class PoolerError(Exception):
    """Base class of every error the core raises on purpose."""


class ConfigError(PoolerError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class SecretBoxError(PoolerError):
    pass


class AuthJsonError(PoolerError):
    pass


class NotFoundError(PoolerError):
    pass


class ConflictError(PoolerError):
    pass
