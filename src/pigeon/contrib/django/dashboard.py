"""A Django view that serves the ASGI dashboard (see ``pigeon.contrib.django.urls``).

The view is synchronous and runs the dashboard on the pigeon app's own loop
thread, so broker connections are opened once and reused, under WSGI and ASGI
alike.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

WRITE_PERMISSION = "pigeon.change_job"


@functools.cache
def _asgi(alias: str) -> tuple[Any, Any]:
    from pigeon.contrib.django import get_app
    from pigeon.dashboard import create_app

    app = get_app(alias)
    secret = hashlib.sha256(b"pigeon.dashboard:" + settings.SECRET_KEY.encode()).digest()
    return app, create_app(app, external_auth=True, secret=secret)


@csrf_exempt  # the dashboard checks its own CSRF token on every write
def dashboard(request: HttpRequest, path: str = "") -> HttpResponse:
    """Staff see the dashboard; ``pigeon.change_job`` may change things; others log in."""
    user: Any = request.user  # a custom user model need only quack like Django's
    if not (user.is_authenticated and user.is_active and getattr(user, "is_staff", False)):
        return redirect_to_login(request.get_full_path())
    app, asgi = _asgi(getattr(settings, "PIGEON_DASHBOARD_BACKEND", "default"))
    prefix = request.path[: len(request.path) - len(path)].rstrip("/")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": prefix,
        "query_string": request.META.get("QUERY_STRING", "").encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        "server": (request.get_host(), int(request.get_port())),
        "client": None,
        "pigeon.user": user.get_username(),
        "pigeon.can_write": user.has_perm(WRITE_PERMISSION),
    }
    status, headers, body = app.portal_call(_call(asgi, scope, request.body))
    response = HttpResponse(body, status=status)
    for name, value in headers:
        if name.lower() not in ("content-length",):
            response[name] = value
    return response


async def _call(asgi: Any, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 500
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asgi(scope, receive, send)
    return status, headers, b"".join(chunks)
