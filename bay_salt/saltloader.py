"""Where Salt finds Bay's loader modules: the ``salt.loader`` entry point.

The modules (``_modules``, ``_states``, ``_runners``, ``_engines``,
``_grains``) are the package ``bay_salt.saltext`` (in the repository:
``modules/``), installed with the rest of ``bay_salt``; Salt's loader asks
:func:`loader_dirs` for them on every minion and master where bay-salt is
installed, as it does for Salt extensions. A copy synced from a file server
(``saltutil.sync_all`` of an old ``file_roots``) could run against another
version of ``bay_salt``: each module refuses to load from anywhere else
(:func:`foreign`), with a message saying what to do.
"""

from __future__ import annotations

import os

#: Salt's loader kind -> the directory of Bay's modules of that kind
KINDS = {"modules": "_modules", "states": "_states", "runners": "_runners", "engines": "_engines",
         "grains": "_grains"}


def root() -> str:
    """The installed loader modules' directory."""
    import bay_salt.saltext

    return os.path.realpath(os.path.dirname(bay_salt.saltext.__file__))


def loader_dirs() -> dict[str, list[str]]:
    """Salt's new-style entry point: ``{loader kind: [directories]}``."""
    base = root()
    return {kind: [os.path.join(base, sub)] for kind, sub in KINDS.items()}


def foreign(path: str) -> str | None:
    """None if the loader module at ``path`` is the one installed with this
    ``bay_salt``; else why it must not load."""
    here = os.path.realpath(path)
    if os.path.commonpath([here, root()]) == root():
        return None
    return (f"{path} is not the Bay module installed with bay_salt ({root()}); Bay's loader modules come with "
            "the bay-salt package: remove this copy (saltutil.clear_cache, then restart the minion) and do not "
            "serve Bay's modules/ from file_roots")


def virtual(path: str, name: str) -> str | tuple[bool, str]:
    """A loader module's ``__virtual__`` answer once bay_salt imports: its
    name, or (False, why) for a copy that is not the installed one."""
    refused = foreign(path)
    return (False, refused) if refused else name
