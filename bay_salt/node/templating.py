"""The Jinja environment for the config templates in bay_salt/node/templates (beside this module)."""

from __future__ import annotations

from pathlib import Path

import jinja2

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(**context)
