"""Bay's Salt loader modules, shipped inside the bay-salt distribution as the
package ``bay_salt.saltext`` (this directory is its source) and found by
Salt through the ``salt.loader`` entry point (:mod:`bay_salt.saltloader`), so
the modules a minion or master loads always come with the ``bay_salt`` they
call. They are not served from ``file_roots`` and not synced."""
