"""The registry's errors: the 14 codes the OCI distribution spec allows in a
JSON error body, and the one exception that carries one. Anything else (an
unknown endpoint, a storage failure, a bad page size) is a plain HTTP answer
without an OCI body."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"


class RegistryError(Exception):
    """An OCI error: HTTP ``status``, spec ``code``, message and detail."""

    def __init__(self, status: int, code: Code, message: str, detail=None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, Code(code), message, detail
        self.headers = headers or {}

    def body(self) -> dict:
        err = {"code": self.code.value, "message": self.message}
        if self.detail is not None:
            err["detail"] = self.detail
        return {"errors": [err]}


def blob_unknown(digest: str) -> RegistryError:
    """The spec's 404 for a blob that is not (or no longer) in a repository."""
    return RegistryError(404, Code.BLOB_UNKNOWN, "blob unknown to registry", {"digest": digest})


def upload_unknown(uuid: str) -> RegistryError:
    return RegistryError(404, Code.BLOB_UPLOAD_UNKNOWN, "blob upload unknown", {"uuid": uuid[:100]})


def manifest_unknown(reference: str) -> RegistryError:
    return RegistryError(404, Code.MANIFEST_UNKNOWN, "manifest unknown", {"reference": reference})


def digest_mismatch(digest: str, actual: str) -> RegistryError:
    return RegistryError(400, Code.DIGEST_INVALID, "provided digest did not match uploaded content",
                         {"digest": digest, "actual": actual})
