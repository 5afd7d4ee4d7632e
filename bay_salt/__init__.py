"""Bay: a container platform toolkit built on SaltStack."""

__version__ = "0.1.0"
