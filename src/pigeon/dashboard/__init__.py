"""The operator's dashboard: an ASGI application over any pigeon App, on every broker.

``pigeon dashboard APP --auth user:password`` serves it; ``create_app(app, …)``
returns the same application to mount in any ASGI server or Starlette/FastAPI
project. It needs the ``dashboard`` extra (Starlette, Jinja2, uvicorn).

Secure by default: with no credentials and no ``read_only_anonymous`` every
request is refused (401); writes are POSTs with a CSRF token; the Content
Security Policy forbids inline scripts (the one script is a static file).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pigeon.errors import ConfigurationError

if TYPE_CHECKING:
    from pigeon.app import App

__all__ = ["create_app"]


def create_app(
    app: App,
    *,
    auth: str | None = None,
    read_only_anonymous: bool = False,
    refresh: float = 2.0,
    secret: bytes | None = None,
    external_auth: bool = False,
) -> Any:
    """The dashboard of ``app`` as an ASGI application.

    Args:
        app: the pigeon App whose broker the dashboard reads and changes.
        auth: ``user:password`` who may sign in and change things; defaults to
            the ``PIGEON_DASHBOARD_AUTH`` environment variable.
        read_only_anonymous: let visitors who are not signed in read (never write).
        refresh: seconds between live updates of a page.
        secret: the key sessions and CSRF tokens are signed with; random per process when
            None (give one when several processes serve the dashboard).
        external_auth: the host framework authenticates and says who may write, in the
            ASGI scope (``pigeon.user``, ``pigeon.can_write``); Django's mount uses it.

    Raises:
        ConfigurationError: the extra is missing, or ``auth`` does not read as user:password.
    """
    try:
        from pigeon.dashboard._asgi import build
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs an extra: pip install 'pigeon[dashboard]' ({exc})"
        ) from exc
    from pigeon.dashboard.security import Guard, parse_credentials

    text = auth if auth is not None else os.environ.get("PIGEON_DASHBOARD_AUTH") or None
    guard = Guard(
        credentials=None if text is None else parse_credentials(text),
        read_only_anonymous=read_only_anonymous,
        external=external_auth,
    )
    if secret is not None:
        guard.key = secret
    return build(app, guard, refresh)
