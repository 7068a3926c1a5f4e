"""A worker on the ASGI server's event loop, for the life of the server.

::

    # asgi.py
    from django.core.asgi import get_asgi_application
    from pigeon.contrib.django.asgi import with_worker

    application = with_worker(get_asgi_application())

With ``OPTIONS["worker_in_process"]`` true the worker starts on lifespan
startup and stops (gracefully) on shutdown; otherwise, and under management
commands, lifespan events are acknowledged and nothing starts. Django itself
does not speak lifespan, so this wrapper answers it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pigeon.contrib.django.inprocess import worker_app, worker_config

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def with_worker(application: ASGIApp, *, backend: str = "default", **overrides: Any) -> ASGIApp:
    """Wrap an ASGI application so its lifespan runs a pigeon worker (when the settings ask for one).

    ``overrides`` are WorkerConfig fields over ``OPTIONS["worker"]``.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await application(scope, receive, send)
            return
        await _lifespan(receive, send, backend, overrides)

    return app


async def _lifespan(receive: Receive, send: Send, backend: str, overrides: dict[str, Any]) -> None:
    async with contextlib.AsyncExitStack() as stack:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    pigeon_app = worker_app(backend)
                    if pigeon_app is not None:
                        await stack.enter_async_context(
                            pigeon_app.worker(worker_config(pigeon_app, **overrides))
                        )
                except Exception as exc:  # noqa: BLE001 - the server reports a failed startup
                    await send({"type": "lifespan.startup.failed", "message": f"pigeon: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
