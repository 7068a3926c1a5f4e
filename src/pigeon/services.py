"""Services: long-running coroutines the worker starts, supervises and restarts.

One supervisor per worker, as in Erlang/OTP: a service that crashes is logged
and restarted after an exponential back-off; one that crashes in a loop never
takes the worker down; at shutdown every service is cancelled and awaited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("pigeon.services")

RestartPolicy = Literal["always", "on-failure", "never"]

# A service that ran this long without crashing starts its back-off afresh.
_STABLE_AFTER = 30.0


@dataclass(frozen=True, slots=True)
class Service:
    """A registered service function and how to restart it."""

    fn: Callable[..., Coroutine[Any, Any, None]]
    name: str
    restart: RestartPolicy = "always"
    backoff: tuple[float, float] = (1.0, 30.0)


@dataclass(slots=True)
class ServiceState:
    """What the supervisor knows about one running instance (for status and tests)."""

    label: str
    starts: int = 0
    crashes: int = 0
    last_error: str | None = None
    running: bool = False


async def supervise(
    instances: Sequence[tuple[Service, tuple[Any, ...]]], states: dict[str, ServiceState]
) -> None:
    """Run every instance until cancelled; restart per policy."""
    async with asyncio.TaskGroup() as tg:
        for service, args in instances:
            label = service.name if not args else f"{service.name}{args!r}"
            state = states.setdefault(label, ServiceState(label))
            tg.create_task(_keep_running(service, args, state), name=f"pigeon-service-{label}")


async def _keep_running(service: Service, args: tuple[Any, ...], state: ServiceState) -> None:
    low, high = service.backoff
    delay = low
    while True:
        state.starts += 1
        state.running = True
        started = time.monotonic()
        try:
            await service.fn(*args)
        except asyncio.CancelledError:
            state.running = False
            raise
        except Exception as exc:
            state.running = False
            state.crashes += 1
            state.last_error = f"{type(exc).__name__}: {exc}"
            if service.restart == "never":
                log.error("service %s crashed (%s); not restarting", state.label, state.last_error)
                return
            if time.monotonic() - started > _STABLE_AFTER:
                delay = low
            log.error(
                "service %s crashed (%s); restarting in %.2f s",
                state.label,
                state.last_error,
                delay,
                exc_info=exc,
            )
        else:
            state.running = False
            if service.restart != "always":
                log.info("service %s finished", state.label)
                return
            log.info("service %s returned; restarting in %.2f s", state.label, delay)
        await asyncio.sleep(delay)
        delay = min(high, delay * 2)
