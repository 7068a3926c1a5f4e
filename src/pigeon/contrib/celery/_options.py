"""Celery's task options, mapped onto pigeon's; the errors of the compatibility layer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pigeon.errors import ConfigurationError, PigeonError
from pigeon.retry import BackoffPolicy, Fixed

DEFAULT_RETRY_DELAY = 180.0
"""Celery's ``default_retry_delay``: three minutes."""
UNBOUNDED_RETRIES = 1_000_000
"""``max_retries=None`` (retry forever) as an attempt count."""


class Unsupported(ConfigurationError):
    """Something Celery offers that pigeon does not; the message names pigeon's equivalent."""


class MaxRetriesExceededError(PigeonError):
    """``self.retry()`` was called with no retries left and no ``exc`` to raise."""


IGNORED_TASK_OPTIONS = {
    "acks_late": "pigeon always acknowledges after the job ends (a lost worker's job runs again)",
    "acks_on_failure_or_timeout": "a failed job is settled FAILED and kept; nothing to acknowledge",
    "reject_on_worker_lost": "a lost worker's job always runs again while it has attempts left",
    "track_started": "the RUNNING state (STARTED) is always recorded",
    "store_errors_even_if_ignored": "errors are always kept for failed_ttl",
    "send_events": "pigeon has no event stream to opt into: `pigeon status`, logs and metrics",
    "trail": "chains and groups keep their ids in their handles",
    "typing": "arguments are always checked against the signature at send",
    "throws": "expected errors are logged like any failure",
    "resultrepr_maxsize": "results are stored in full",
    "lazy": "tasks register when decorated",
    "compression": "payloads are small JSON",
}
"""Options Celery users set that have nothing to configure here, and why."""

_MAPPED = {
    "name",
    "bind",
    "autoretry_for",
    "dont_autoretry_for",
    "retry_kwargs",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "max_retries",
    "default_retry_delay",
    "time_limit",
    "soft_time_limit",
    "queue",
    "priority",
    "ignore_result",
    "rate_limit",
    "expires",
    "serializer",
    "base",
}


@dataclass(frozen=True, slots=True)
class CeleryBackoff:
    """Celery's ``retry_backoff``: ``factor * 2**retries`` capped, with full jitter (0..delay)."""

    factor: float
    cap: float = 600.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        d = min(self.cap, self.factor * 2 ** max(0, attempt - 1))
        return random.uniform(0, d) if self.jitter else d


@dataclass(frozen=True, slots=True)
class CompatOptions:
    """A Celery task's options, checked, in the terms the compatibility layer needs."""

    name: str | None
    bind: bool
    autoretry_for: tuple[type[BaseException], ...]
    max_retries: int | None
    default_retry_delay: float
    backoff: BackoffPolicy
    timeout: float | None
    queue: str
    priority: int
    rate: str | None
    expires: float | None

    @property
    def max_attempts(self) -> int:
        return UNBOUNDED_RETRIES if self.max_retries is None else self.max_retries + 1


def parse_task_options(fn_name: str, options: dict[str, Any]) -> CompatOptions:
    """Check a ``@shared_task(...)`` call's options and map them.

    Raises:
        Unsupported: an option pigeon cannot honour (a custom ``base``, ``pickle``).
        TypeError: an option Celery does not have either.
    """
    unknown = sorted(set(options) - _MAPPED - set(IGNORED_TASK_OPTIONS))
    if unknown:
        raise TypeError(f"{fn_name}: unknown task option(s) {', '.join(unknown)}")
    if options.get("base") is not None:
        raise Unsupported(
            f"{fn_name}: base= (a custom Task class) is not supported; move on_failure/on_success "
            "hooks into the task body or a wrapper, and shared state into a module"
        )
    check_serializer(fn_name, options.get("serializer"))
    if options.get("dont_autoretry_for"):
        raise Unsupported(f"{fn_name}: dont_autoretry_for= is not supported; list autoretry_for= precisely")
    retry_kwargs: dict[str, Any] = dict(options.get("retry_kwargs") or {})
    extra = sorted(set(retry_kwargs) - {"max_retries", "countdown"})
    if extra:
        raise Unsupported(f"{fn_name}: retry_kwargs supports max_retries and countdown, not {extra}")
    max_retries = retry_kwargs.get("max_retries", options.get("max_retries", 3))
    default_delay = float(options.get("default_retry_delay", DEFAULT_RETRY_DELAY))
    backoff: BackoffPolicy
    retry_backoff = options.get("retry_backoff", False)
    if retry_backoff:
        factor = 1.0 if retry_backoff is True else float(retry_backoff)
        backoff = CeleryBackoff(
            factor, float(options.get("retry_backoff_max", 600)), bool(options.get("retry_jitter", True))
        )
    else:
        backoff = Fixed(float(retry_kwargs.get("countdown", default_delay)))
    limits = [v for v in (options.get("time_limit"), options.get("soft_time_limit")) if v is not None]
    priority = int(options.get("priority") or 0)
    return CompatOptions(
        name=options.get("name"),
        bind=bool(options.get("bind", False)),
        autoretry_for=tuple(options.get("autoretry_for") or ()),
        max_retries=max_retries,
        default_retry_delay=default_delay,
        backoff=backoff,
        timeout=float(min(limits)) if limits else None,
        queue=options.get("queue") or "default",
        priority=map_priority(priority),
        rate=_rate(options.get("rate_limit")),
        expires=options.get("expires"),
    )


def _rate(rate: str | float | None) -> str | None:
    # Celery takes a bare number as tasks per second.
    if rate is None or isinstance(rate, str):
        return rate
    return f"{rate}/s"


def map_priority(priority: int | None) -> int:
    """Celery's 0..255 (higher first, as on RabbitMQ) onto pigeon's -100..100."""
    if priority is None:
        return 0
    if not 0 <= priority <= 255:
        raise ValueError(f"priority must be within 0..255, not {priority}")
    return min(priority, 100)


def check_serializer(where: str, serializer: str | None) -> None:
    if serializer not in (None, "json"):
        raise Unsupported(
            f"{where}: serializer={serializer!r}: pigeon sends JSON only; pass ids and plain data "
            "(or msgspec Structs / frozen dataclasses) instead of pickled objects"
        )


_PICKLE_HINT = (
    " — Celery's pickle serializer let objects through; pigeon sends JSON. Pass an id "
    "(e.g. obj.pk) and load the object in the task, or plain data / a msgspec Struct / a "
    "frozen dataclass."
)

_IGNORED_SEND_OPTIONS = frozenset({"retry", "retry_policy", "ignore_result", "add_to_parent"})


def check_send_options(name: str, options: dict[str, Any]) -> None:
    """Refuse send options pigeon cannot honour; options that mean nothing pass."""
    refused = sorted(set(options) - _IGNORED_SEND_OPTIONS)
    if not refused:
        return
    hints = {
        "link": "chain(task.s(...), callback.s())",
        "link_error": "catch the error in the task, or `pigeon jobs list --state failed`",
        "headers": "pass what you need as an argument",
        "routing_key": "queue=",
        "exchange": "queue=",
    }
    hint = "; ".join(f"{k}: use {hints[k]}" for k in refused if k in hints)
    raise Unsupported(
        f"{name}: send option(s) {', '.join(refused)} not supported" + (f" ({hint})" if hint else "")
    )


def with_pickle_hint(exc: TypeError) -> TypeError:
    message = str(exc)
    if "cannot be encoded" in message or "Encoding objects of type" in message:
        return TypeError(message + _PICKLE_HINT)
    return exc


def aware(moment: datetime) -> datetime:
    # Celery reads a naive eta as UTC (enable_utc, its default).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def expires_in(expires: float | datetime | timedelta | None) -> float | datetime | None:
    """Celery's ``expires`` (seconds, a moment or a timedelta) as pigeon's."""
    if isinstance(expires, datetime):
        return aware(expires)
    if isinstance(expires, timedelta):
        return expires.total_seconds()
    return expires
