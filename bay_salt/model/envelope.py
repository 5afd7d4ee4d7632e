"""A node's events, signed with its own minion key (NodeRestriction for Salt
events).

Salt proves who sent a request, and fires a single event with that id; but a
minion may also send an ``events`` list whose items the master fires with
whatever ``id`` each item claims. So the node agent signs what it sends (the
sender's id, the tag and the data) with its minion's private key, which only
that node's root holds, and the controller checks the signature against the
key the master accepted for that id: root on one node cannot speak for another.

    sig = sign(private_pem, "node1", tag, data)       # on the node
    ok, why = verify(public_pem, "node1", tag, data, sig)   # on the master
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: the field of a Salt event's load that carries the signature
FIELD = "bay_sig"
#: a minion id that can name a key file (no path, no traversal)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def canonical(minion_id: str, tag: str, data: dict) -> bytes:
    """The bytes signed: id, tag and data as sorted, compact JSON."""
    return json.dumps({"id": minion_id, "tag": tag, "data": data}, sort_keys=True, separators=(",", ":"),
                      default=str).encode()


def load_private(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a minion key is an RSA key")
    return key


def sign(key: rsa.RSAPrivateKey, minion_id: str, tag: str, data: dict) -> str:
    return base64.b64encode(key.sign(canonical(minion_id, tag, data), padding.PKCS1v15(), hashes.SHA256())).decode()


def valid_id(minion_id: object) -> bool:
    return isinstance(minion_id, str) and bool(_ID.match(minion_id)) and ".." not in minion_id


def verify(public_pem: bytes | None, minion_id: str, tag: str, data: dict, sig: object) -> tuple[bool, str]:
    """(True, "") if ``sig`` is ``minion_id``'s signature of the event, else (False, why)."""
    if not valid_id(minion_id):
        return False, f"sender id {minion_id!r} is not a minion id"
    if public_pem is None:
        return False, f"no accepted key for {minion_id}"
    if not isinstance(sig, str) or not sig:
        return False, f"event claiming to be from {minion_id} is not signed"
    try:
        key = serialization.load_pem_public_key(public_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            return False, f"the accepted key of {minion_id} is not an RSA key"
        key.verify(base64.b64decode(sig, validate=True), canonical(minion_id, tag, data), padding.PKCS1v15(),
                   hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False, f"event claiming to be from {minion_id} has a signature that is not {minion_id}'s"
    return True, ""
