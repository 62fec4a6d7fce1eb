"""Server-rendered sign-in pages (Jinja2, autoescaped; plain HTML forms that need no JavaScript)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from himhis import i18n

_env = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                   autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
i18n.install(_env)


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)
