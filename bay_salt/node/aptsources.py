"""Read the machine's own apt sources, so Bay never hard-codes a mirror.

Both deb822 (``/etc/apt/sources.list.d/*.sources``) and one-line
(``/etc/apt/sources.list``, ``*.list``) formats are understood.
"""

from __future__ import annotations

import argparse
import glob
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_deb822(text: str) -> list[AptSource]:
    """Parse deb822 stanzas; only ``Types: deb`` stanzas are returned."""
    sources = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(
                AptSource(uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split()))
            )
    return sources


def parse_one_line(text: str) -> list[AptSource]:
    """Parse ``deb [opts] URI SUITE COMPONENT...`` lines."""
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            sources.append(AptSource(words[0], (words[1],), tuple(words[2:])))
    return sources


def read_sources(root: str = "/") -> list[AptSource]:
    """All enabled ``deb`` sources of the system rooted at ``root``."""
    sources: list[AptSource] = []
    etc = os.path.join(root, "etc/apt")
    one_line = [os.path.join(etc, "sources.list")] + sorted(glob.glob(os.path.join(etc, "sources.list.d/*.list")))
    for path in one_line:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                sources += parse_one_line(fh.read())
    for path in sorted(glob.glob(os.path.join(etc, "sources.list.d/*.sources"))):
        with open(path, encoding="utf-8") as fh:
            sources += parse_deb822(fh.read())
    return sources


def debian_mirror(sources: list[AptSource], codename: str | None = None) -> str:
    """The URI of the main Debian archive among ``sources``.

    Security and update suites are skipped; if ``codename`` is given a source
    carrying that suite is preferred.
    """
    candidates = [
        s
        for s in sources
        if "main" in s.components and any(not ("security" in x or "-" in x) for x in s.suites)
    ]
    if codename:
        preferred = [s for s in candidates if codename in s.suites]
        candidates = preferred or candidates
    if not candidates:
        raise LookupError("no Debian main archive found in the apt sources")
    return candidates[0].uri.rstrip("/")


def deb822_source(mirror: str, suites: str) -> str:
    """A deb822 stanza for ``suites`` (space separated) of Debian's main archive at ``mirror``."""
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {suites}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def bullseye_source(root: str = "/") -> str:
    """Debian bullseye on this machine's own mirror (Consul 1.8.7 lives there)."""
    return deb822_source(debian_mirror(read_sources(root)), "bullseye")


#: keeps bullseye for what is asked for by name (``apt-get install consul/bullseye``)
BULLSEYE_PIN = "Package: *\nPin: release n=bullseye\nPin-Priority: 100\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="print facts derived from this machine's apt sources")
    parser.add_argument("what", choices=["mirror", "bullseye-source"])
    parser.add_argument("--root", default="/")
    args = parser.parse_args(argv)
    if args.what == "mirror":
        print(debian_mirror(read_sources(args.root)))
    else:
        print(bullseye_source(args.root), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
