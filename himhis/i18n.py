"""Translation of page labels: English in the templates, other locales as JSON catalogues.

Templates mark every label with ``{{ _("Find a patient") }}`` (Jinja2's i18n extension with new-style
gettext, so ``{{ _("Bed %(bed)s", bed=b) }}`` substitutes after translating). Each locale has a folder
under ``himhis/locales/`` holding one JSON object per module (``{"English label": "translation"}``);
the folder's files are merged. A label without a translation shows in English. The locale comes from
the ``himhis_lang`` cookie (set at ``/lang/{code}``), else from ``Accept-Language``, else English.
"""

from __future__ import annotations

import contextvars
from functools import cache
from pathlib import Path

import orjson
from jinja2 import Environment
from starlette.types import ASGIApp, Receive, Scope, Send

LOCALES: dict[str, str] = {"en": "English", "hi": "हिन्दी"}
DEFAULT = "en"
COOKIE = "himhis_lang"
HERE = Path(__file__).resolve().parent / "locales"

_locale: contextvars.ContextVar[str] = contextvars.ContextVar("himhis_locale", default=DEFAULT)


@cache
def catalogue(locale: str) -> dict[str, str]:
    """Every translation of ``locale``, from all JSON files in its folder."""
    merged: dict[str, str] = {}
    folder = HERE / locale
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        for key, value in orjson.loads(path.read_bytes()).items():
            if not key.startswith("_"):
                merged[key] = value
    return merged


def current() -> str:
    return _locale.get()


def gettext(message: str) -> str:
    locale = _locale.get()
    if locale == DEFAULT:
        return message
    return catalogue(locale).get(message) or message


def ngettext(singular: str, plural: str, n: int) -> str:
    return gettext(singular if n == 1 else plural)


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The locale for a request: the cookie's if known, else the first known language asked for."""
    if cookie in LOCALES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower().split("-")[0]
        if tag in LOCALES:
            return tag
    return DEFAULT


def install(env: Environment) -> Environment:
    """Give a Jinja2 environment ``_``, ``gettext``, ``ngettext`` and the ``locale`` global."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["locale"] = current
    env.globals["locales"] = LOCALES
    return env


class LocaleMiddleware:
    """Sets the request's locale for everything that renders while it is served (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k: v for k, v in scope.get("headers", ()) if k in (b"cookie", b"accept-language")}
        cookie = None
        for item in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = item.strip().partition("=")
            if name == COOKIE:
                cookie = value
        token = _locale.set(choose(cookie, headers.get(b"accept-language", b"").decode("latin-1")))
        try:
            await self.app(scope, receive, send)
        finally:
            _locale.reset(token)

