"""Codex Pooler shared core: configuration, data model, secrets, keys, selection policy, CLI.

The core depends on no process package (extproc, admin_flask, scheduler); they depend on it.
"""

__version__ = "0.1.0"
