"""Who may read which service's output on a node's log endpoint.

The master signs short-lived tokens (ES256, its private key never leaves it)
naming the services a user may read; every node checks them with the public
key from pillar (``bay:logs:token_public_key``). A node holds no secret that
would let it mint one.
"""

from __future__ import annotations

import fnmatch
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "bay-master"
AUDIENCE = "bay-logs"
ALGORITHM = "ES256"


def new_key_pair() -> tuple[str, str]:
    """(private key PEM, public key PEM) for signing and checking tokens."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def issue(private_pem: str, user: str, services: list[str], ttl: float, now: float | None = None) -> str:
    """A token letting ``user`` read the output of ``services`` (names or globs; ``*``: all) for ``ttl`` s."""
    now = time.time() if now is None else now
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": user, "iat": int(now), "exp": int(now + ttl),
              "services": list(services)}
    return jwt.encode(claims, private_pem, algorithm=ALGORITHM)


class Refused(PermissionError):
    """The request's token is missing, bad or expired (``status`` 401), or
    does not cover the service (403)."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


def check(public_pem: str, header: str | None, service: str | None) -> dict:
    """The token's claims if ``header`` (``Authorization``) carries a valid
    token covering ``service`` (None: any service); else :class:`Refused`."""
    if not public_pem:
        raise Refused("this node has no bay:logs:token_public_key: nobody can be let in")
    if not header or not header.startswith("Bearer ") or not header[len("Bearer "):].strip():
        raise Refused("a bearer token is needed (salt-run bay.logs gives one)")
    try:
        claims = jwt.decode(header[len("Bearer "):].strip(), public_pem, algorithms=[ALGORITHM], audience=AUDIENCE,
                            issuer=ISSUER, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Refused("the token has expired (ask salt-run bay.logs for a new one)") from None
    except jwt.PyJWTError as err:
        raise Refused(f"the token is not valid ({err})") from None
    if service is not None and not covers(claims.get("services") or [], service):
        raise Refused(f"the token does not cover service {service}", 403)
    return claims


def covers(patterns: list[str], service: str) -> bool:
    return any(fnmatch.fnmatchcase(service, p) for p in patterns)
