"""Alerts: rules over a plain-data snapshot, incidents with cooldown, signed webhook and email delivery.

Modules: `rules` (pure), `snapshot` (DB -> plain data), `incidents` (open/escalate/resolve), `message`
(metadata-only payload and text), `webhook` (HMAC signing, sending), `email` (SMTP), `evaluate` (the job).
"""
