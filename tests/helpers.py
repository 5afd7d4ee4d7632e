"""Shared test constants."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]

#: Consul ACL tokens for tests (fixed UUIDs: secrets only in name here)
TOKENS = {"management": "00000000-0000-4000-8000-000000000001", "agent": "00000000-0000-4000-8000-000000000002",
          "reader": "00000000-0000-4000-8000-000000000003", "registry": "00000000-0000-4000-8000-000000000004",
          "controller": "00000000-0000-4000-8000-000000000005"}
#: the registry's auth for tests: a token secret, one user (the nodes'), its password
REGISTRY_AUTH = {"secret": "0123456789abcdef0123456789abcdef", "node_password": "pull-only",
                 "users": {"node": "$2b$10$QyKsvVgoi8Zh4C3RD4yqPeUlPvOtlDfMF0UKKVVPnmdmqQLvXG6s."}}


def non_null(points: list) -> list[float]:
    """The values of a Graphite series that are there (render gives None for an empty slot)."""
    return [v for v, _ in points or [] if v is not None]
