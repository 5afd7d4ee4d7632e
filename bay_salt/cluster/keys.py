"""Salt key pairs that ``bay up`` seeds, so no key is ever auto-accepted."""

from __future__ import annotations

from dataclasses import dataclass

import salt.crypt


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def generate(bits: int = 2048) -> KeyPair:
    """A new RSA pair in the PEM formats Salt itself writes."""
    priv, pub = salt.crypt.gen_keys(bits)
    return KeyPair(priv, pub)
