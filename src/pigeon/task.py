"""Task: a registered function with its options; sending it makes a Job."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack

import msgspec

from pigeon.client import Client
from pigeon.codec import ArgCodec
from pigeon.errors import InvalidTask
from pigeon.handle import JobHandle
from pigeon.job import MAX_PRIORITY, MIN_PRIORITY, Job, Step, Then, new_id
from pigeon.retry import Backoff, BackoffPolicy

P = ParamSpec("P")
R = TypeVar("R")

Executor = Literal["async", "thread", "process"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running job knows about itself.

    A task receives it when its first parameter is annotated ``JobContext``.
    """

    job_id: str
    task: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: str
    reporter: Callable[[float, str], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job is (0.0–1.0), visible from its handle and as a
        ``pigeon.progress`` event. Does not wait; a no-op in process-pool tasks."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress is a fraction from 0 to 1, not {fraction}")
        if self.reporter is not None:
            self.reporter(fraction, message)


_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str) -> float:
    """``"100/m"`` → jobs per second. Units: s, m, h."""
    count, _, unit = rate.partition("/")
    try:
        per_second = float(count) / _RATE_UNITS[unit.strip() or "s"]
    except (ValueError, KeyError):
        raise ValueError(f"rate {rate!r}: write a count per s, m or h, e.g. '100/m'") from None
    if per_second <= 0:
        raise ValueError(f"rate {rate!r} must be positive")
    return per_second


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """A task's defaults; every job of the task starts from these.

    Attributes:
        queue: the queue its jobs go to.
        priority: -100..100, higher first.
        max_attempts: attempts before a job fails.
        timeout: seconds one attempt may run (a thread cannot be stopped:
            its job is failed and the thread left to finish).
        executor: ``"async"``, ``"thread"`` or ``"process"``.
        backoff: delay policy between attempts.
        retry_on: exceptions that spend an attempt and retry; others fail at once.
        concurrency: at most this many of its jobs run at once, across all workers.
        rate: at most this many start per second/minute/hour across all workers
            (``"100/m"``); jobs over the rate wait, spending no attempt.
    """

    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    executor: Executor = "async"
    backoff: BackoffPolicy = Backoff()
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    concurrency: int | None = None
    rate: str | None = None

    def __post_init__(self) -> None:
        _check_priority(self.priority)
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.rate is not None:
            parse_rate(self.rate)
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")


class TaskOptionArgs(TypedDict, total=False):
    """The keywords of ``app.task(...)``, ``app.on(...)`` and ``app.periodic(...)``.

    ``name`` and the fields of :class:`TaskOptions`, where each is documented;
    ``executor`` defaults to ``"async"`` for ``async def`` functions, else ``"thread"``.
    """

    name: str | None
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    executor: Executor | None
    backoff: BackoffPolicy
    retry_on: tuple[type[BaseException], ...]
    concurrency: int | None
    rate: str | None


def task_options(fn: Callable[..., Any], args: TaskOptionArgs) -> TaskOptions:
    """The options ``app.task(**args)`` gives ``fn``.

    Raises:
        ValueError: an option out of range.
    """
    given: dict[str, Any] = {k: v for k, v in args.items() if k != "name"}
    if given.get("executor") is None:
        given["executor"] = "async" if inspect.iscoroutinefunction(fn) else "thread"
    return TaskOptions(**given)


class SendOptionArgs(TypedDict, total=False):
    """The keywords of :meth:`Task.options`: the fields of :class:`SendOptions` (None: unchanged)."""

    queue: str | None
    priority: int | None
    max_attempts: int | None
    timeout: float | None
    delay: float | None
    run_at: datetime | None
    unique_key: str | None
    connection: Any
    expires: float | datetime | None


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Per-send overrides, made by :meth:`Task.options`.

    Attributes:
        queue: the queue to send to.
        priority: -100..100, higher runs first.
        max_attempts: attempts before the job fails.
        timeout: seconds one attempt may run.
        delay: seconds from now before the job may start.
        run_at: an aware datetime before which the job may not start.
        unique_key: while a job with this key is pending, sends return it instead.
        connection: your own database connection (psycopg, sqlite3) to the
            broker's database: the job is written inside your transaction,
            invisible until you commit and gone if you roll back. Brokers
            without ``transactional_enqueue`` raise ``UnsupportedFeature``.
        expires: seconds from the send, or an aware datetime: a job not started
            by then is cancelled by the worker that claims it, never run.
    """

    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    delay: float | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    connection: Any = None
    expires: float | datetime | None = None

    def __post_init__(self) -> None:
        if self.priority is not None:
            _check_priority(self.priority)
        if isinstance(self.expires, datetime) and self.expires.tzinfo is None:
            raise ValueError("expires must be an aware datetime (e.g. datetime.now(UTC)) or seconds")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at must be an aware datetime (e.g. datetime.now(UTC))")
        if self.delay is not None and self.run_at is not None:
            raise ValueError("give delay or run_at, not both")


def _check_priority(priority: int) -> None:
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be within {MIN_PRIORITY}..{MAX_PRIORITY}, not {priority}")


def default_name(fn: Callable[..., Any]) -> str:
    """``module.qualname``, with ``__main__`` replaced by the script's module name.

    A script that both defines and sends tasks names them as a worker importing
    it as a module would.
    """
    module = fn.__module__
    if module == "__main__":
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
        elif getattr(main, "__file__", None):
            module = Path(main.__file__).stem  # type: ignore[arg-type]
    return f"{module}.{fn.__qualname__}"


def _takes_context(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return False
    ann = params[0].annotation
    return ann is JobContext or ann == "JobContext"


class Task(Generic[P, R]):
    """A function registered with an app. Call it to run it here; ``send`` to run it on a worker.

    ``client`` is the app's :class:`~pigeon.client.Client`, which its sends go through.
    """

    def __init__(
        self,
        client: Client,
        fn: Callable[P, R] | Callable[P, Coroutine[Any, Any, R]],
        name: str,
        options: TaskOptions,
        send_options: SendOptions | None = None,
    ) -> None:
        self.client = client
        self.fn = fn
        self.name = name
        self.defaults = options
        self.send_defaults = send_options or SendOptions()
        self.is_async = inspect.iscoroutinefunction(fn)
        self.takes_context = _takes_context(fn)
        self.codec = ArgCodec(fn, skip_first=self.takes_context)
        if options.executor == "async" and not self.is_async:
            raise InvalidTask(f"{name}: executor='async' needs an async def function")
        if options.executor == "process":
            if self.is_async:
                raise InvalidTask(f"{name}: executor='process' runs plain functions, not coroutines")
            if "<lambda>" in fn.__qualname__ or "<locals>" in fn.__qualname__:
                raise InvalidTask(f"{name}: executor='process' needs a module-level function")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function directly, in this process (no broker, no retries)."""
        return self.fn(*args, **kwargs)

    def options(self, **changes: Unpack[SendOptionArgs]) -> Task[P, R]:
        """A copy of this task whose sends use these options (see :class:`SendOptions`).

        Raises:
            ValueError: an option out of range.
        """
        given: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
        merged = dataclasses.replace(self.send_defaults, **given)
        # A copy, not a new Task: the codec (its signature, its argument decoder) is built
        # once per task, not on every send with options (a Django enqueue makes one each).
        sender = copy.copy(self)
        sender.send_defaults = merged
        return sender

    def make_job(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        """The job this send would enqueue; arguments are checked and encoded here.

        Raises:
            TypeError: the arguments do not fit the function's signature.
        """
        return self.job_with_payload(self.codec.encode_args(args, kwargs))

    def make_event_job(self, topic: str, body: bytes) -> Job:
        """A handler's job for an event whose payload was encoded once as ``body``.

        Raises:
            TypeError: the payload does not fit the handler's event parameter.
        """
        param = self.codec.first_param
        if param is None:
            raise InvalidTask(f"{self.name}: an event handler takes the event as its parameter")
        payload = b'{"' + param.encode() + b'":' + body + b"}"
        try:
            self.codec.decoder().decode(payload)
        except msgspec.ValidationError as exc:
            raise TypeError(f"{self.name} cannot take this {topic!r} event: {exc}") from None
        return self.job_with_payload(payload)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature for workflows: this task with some (or all) of its arguments.

        Raises:
            TypeError: the arguments cannot bind to the function.
        """
        self.codec.encode_partial(args, kwargs)
        return Signature(self, args, kwargs)

    def job_with_payload(self, payload: bytes) -> Job:
        """A job of this task whose arguments are already encoded."""
        o, d = self.send_defaults, self.defaults
        now = time.time()
        run_at: float | None = None
        if o.delay is not None:
            run_at = now + o.delay
        elif o.run_at is not None:
            run_at = o.run_at.timestamp()
        expires_at: float | None = None
        if isinstance(o.expires, datetime):
            expires_at = o.expires.timestamp()
        elif o.expires is not None:
            expires_at = now + o.expires
        return Job(
            id=new_id(),
            task=self.name,
            queue=o.queue or d.queue,
            payload=msgspec.Raw(payload),
            priority=o.priority if o.priority is not None else d.priority,
            max_attempts=o.max_attempts or d.max_attempts,
            timeout=o.timeout or d.timeout,
            run_at=run_at,
            unique_key=o.unique_key,
            enqueued_at=now,
            limit_key=None if d.concurrency is None else self.name,
            limit=d.concurrency or 0,
            expires_at=expires_at,
        )

    def _handles(self, ids: list[str]) -> list[JobHandle[R]]:
        return [JobHandle(self.client, i, self.name) for i in ids]

    def send(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Enqueue one job from synchronous code.

        Raises:
            TypeError: the arguments do not fit the signature or cannot be encoded.
            BrokerError: the broker did not store the job.
        """
        job = self.make_job(args, kwargs)
        if self.send_defaults.connection is not None:
            return self._handles(self.client.enqueue_in(self.send_defaults.connection, [job]))[0]
        return self._handles(self.client.enqueue([job]))[0]

    async def asend(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Enqueue one job from asynchronous code. Raises as :meth:`send`."""
        job = self.make_job(args, kwargs)
        if self.send_defaults.connection is not None:
            return self._handles(await self.client.aenqueue_in(self.send_defaults.connection, [job]))[0]
        return self._handles(await self.client.aenqueue([job]))[0]

    def send_many(self, calls: Iterable[tuple[Any, ...]]) -> list[JobHandle[R]]:
        """Enqueue many jobs in one round trip; each item is a tuple of positional arguments."""
        return self._handles(self.client.enqueue([self.make_job(tuple(c), {}) for c in calls]))

    async def asend_many(self, calls: Iterable[tuple[Any, ...]]) -> list[JobHandle[R]]:
        """Asynchronous :meth:`send_many`."""
        return self._handles(await self.client.aenqueue([self.make_job(tuple(c), {}) for c in calls]))

    def decode_result(self, data: bytes) -> R:
        result: R = self.codec.decode_result(data)
        return result


@dataclass(frozen=True)
class Signature:
    """A task with some of its arguments: made by ``task.s(*args, **kwargs)``.

    In a chain, the previous step's result fills the first parameter the
    signature leaves unbound.
    """

    task: Task[Any, Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def step(self) -> Step:
        o = self.task.send_defaults
        args = self.task.codec.encode_partial(self.args, self.kwargs)
        return Step(self.task.name, msgspec.Raw(args), o.queue, o.priority)

    def job(self, job_id: str, then: Then | None = None, payload: bytes | None = None) -> Job:
        body = payload if payload is not None else self.task.codec.encode_args(self.args, self.kwargs)
        job = self.task.job_with_payload(body)
        return msgspec.structs.replace(job, id=job_id, then=then)
