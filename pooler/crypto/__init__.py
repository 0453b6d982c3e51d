"""Secrets at rest (AES-256-GCM secret box), the keyring it reads, and keyed hashes (HMAC-SHA256)."""
