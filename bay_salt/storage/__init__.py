"""Storage of Bay's registry and of the log archive, behind one small interface
(:mod:`.driver`) with two drivers: :mod:`.local` and :mod:`.hdfs`.

Paths are ``/``-separated and relative to the driver's root; the registry
builds every path itself from validated names and digests (see
:mod:`bay_salt.registry.layout`), and :func:`check_path` refuses anything
else (``..``, absolute, empty parts) once more here.

Writes of whole objects are atomic (write a temporary object beside the final
one, then rename), so a crash never leaves a partial object visible under its
final name, and listings never show temporary objects: their names carry
:data:`TMP_MARK`, which no repository name, tag or digest can contain.
Optional features (a local file to send with sendfile, a URL where storage
serves an object itself) are part of the interface: a driver without them
answers None. Both drivers are synchronous; the server runs them in a thread
pool.
"""

from __future__ import annotations

from bay_salt.storage.driver import CHUNK, TMP_MARK, Driver, NotFound, Stat, StorageError, check_path, tmp_name, visible
from bay_salt.storage.hdfs import HDFSDriver
from bay_salt.storage.local import LocalDriver

__all__ = ["CHUNK", "TMP_MARK", "Driver", "HDFSDriver", "LocalDriver", "NotFound", "Stat", "StorageError",
           "check_path", "from_url", "tmp_name", "visible"]


def from_url(url: str, user: str | None = None) -> Driver:
    """``file:///var/lib/bay-registry`` or ``hdfs://nn1:9870,nn2:9870/bay-registry``
    (WebHDFS ports; ``user``: the HDFS user, default $USER)."""
    if url.startswith("file://"):
        return LocalDriver(url[len("file://"):])
    if url.startswith("hdfs://"):
        hosts, _, root = url[len("hdfs://"):].partition("/")
        return HDFSDriver([f"http://{h}" for h in hosts.split(",")], "/" + root, user=user)
    if url.startswith("/"):
        return LocalDriver(url)
    raise StorageError(f"storage {url!r}: expected file:///PATH or hdfs://NAMENODE:PORT[,...]/PATH")
