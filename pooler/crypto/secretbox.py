"""AES-256-GCM secret box: 96-bit random nonce, AAD binding subject + kind + key id.

A sealed secret records the id of the key that sealed it; `open` accepts any key of the keyring, `seal` always
uses the current one, so rotation is: open with the old key, seal with the current one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pooler.crypto.keyring import Keyring
from pooler.errors import SecretBoxError

NONCE_BYTES = 12


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def _aad(subject: str, kind: str, key_id: str) -> bytes:
    # NUL separators: no subject/kind/key-id combination can collide with another.
    return b"\x00".join((b"pooler-secret-v1", subject.encode(), kind.encode(), key_id.encode()))


class SecretBox:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    @property
    def current_key_id(self) -> str:
        return self._keyring.current_id

    def seal(self, subject: str, kind: str, plaintext: str) -> Sealed:
        key_id = self._keyring.current_id
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext.encode(), _aad(subject, kind, key_id))
        return Sealed(key_id=key_id, nonce=nonce, ciphertext=ciphertext)

    def open(self, subject: str, kind: str, sealed: Sealed) -> str:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise SecretBoxError(f"secret was sealed with key {sealed.key_id!r}, which is not in the keyring")
        if len(sealed.nonce) != NONCE_BYTES:
            raise SecretBoxError("secret has a malformed nonce")
        try:
            plaintext = cipher.decrypt(sealed.nonce, sealed.ciphertext, _aad(subject, kind, sealed.key_id))
        except InvalidTag:
            raise SecretBoxError(f"secret {kind} of {subject} failed authentication (tampered or wrong key)") from None
        return plaintext.decode()

    def needs_rotation(self, sealed: Sealed) -> bool:
        return sealed.key_id != self._keyring.current_id


def account_subject(account_id: int) -> str:
    return f"account:{account_id}"
