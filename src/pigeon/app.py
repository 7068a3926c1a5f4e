"""App: the registry of tasks, handlers, services and schedules, and the public face.

The way to the broker (connections per event loop, the portal, sending,
cancelling, looking up) is the app's :class:`~pigeon.client.Client`; the app's
own methods of that kind hand over to it and wrap ids into handles.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, Unpack, overload

from pigeon import limits
from pigeon.brokers.base import Notifier
from pigeon.client import Client, EnqueueHook
from pigeon.errors import ConfigurationError
from pigeon.events import pattern_regex, publish
from pigeon.handle import JobHandle
from pigeon.hooks import JobHook
from pigeon.job import Job
from pigeon.schedule import MissedPolicy, Schedule
from pigeon.seam import CallStats, InstrumentedBroker
from pigeon.services import RestartPolicy, Service
from pigeon.task import JobContext, Task, TaskOptionArgs, default_name, task_options
from pigeon.waiters import ResultWaiters
from pigeon.workflows import CHORD_ATTEMPTS, CHORD_TASK, chord_waiter

if TYPE_CHECKING:
    from pigeon.worker.config import WorkerConfig
    from pigeon.worker.loop import Worker
    from pigeon.worker.thread import WorkerThread

P = ParamSpec("P")
R = TypeVar("R")


class _TaskDecorator(Protocol):
    """What ``app.task(...)`` returns: a decorator typed like ``app.task`` itself."""

    @overload
    def __call__(self, fn: Callable[Concatenate[JobContext, P], Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[JobContext, P], R], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class App:
    """Tasks and a broker URL.

    Args:
        url: the broker, e.g. ``sqlite:///jobs.db``, ``memory://``,
            ``postgresql://…``, ``redis://…``, or a function returning one (read
            when a connection opens). Defaults to ``$PIGEON_URL``, then
            ``sqlite:///pigeon.db``.
        store: for an ``amqp://`` broker, the broker URL that keeps the jobs' record
            (results, lookup, cancel, unique keys, limits) while RabbitMQ carries
            them. Defaults to ``$PIGEON_STORE`` when the broker is RabbitMQ (other brokers
            ignore the variable); see :mod:`pigeon.brokers.rabbitmq`.
        result_ttl: seconds a succeeded job and its result are kept.
        failed_ttl: seconds a failed or cancelled job is kept.
        max_payload: the most bytes a job's encoded arguments may take (``send()`` raises
            :class:`~pigeon.PayloadTooLarge`, a ``TypeError``, before storing anything), and
            its encoded result (the job fails with that error). 16 MiB by default, within
            every broker's own limit; see :mod:`pigeon.limits`.

    Nothing connects until the app is first used.
    """

    def __init__(
        self,
        url: str | Callable[[], str] | None = None,
        *,
        store: str | None = None,
        result_ttl: float = 24 * 3600,
        failed_ttl: float = 7 * 24 * 3600,
        max_payload: int = limits.MAX_BYTES,
    ) -> None:
        self.client = Client(
            url,
            store=store,
            result_ttl=result_ttl,
            failed_ttl=failed_ttl,
            max_payload=max_payload,
            resolve=lambda name: self.resolve_task(name),
        )
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.handlers: list[tuple[str, Task[Any, Any]]] = []
        self.services: list[tuple[Service, tuple[Any, ...]]] = []
        self.schedules: list[Schedule] = []
        self.job_hooks: list[JobHook] = []
        """Called around every attempt a worker of this app runs (see ``pigeon.hooks``)."""
        waiter = chord_waiter(self.client, self.resolve_task)
        self.task(name=CHORD_TASK, max_attempts=CHORD_ATTEMPTS)(waiter)

    def __repr__(self) -> str:
        return f"<App {self.url}>"

    @property
    def url(self) -> str:
        """The broker URL (read when a broker is opened, so a callable may follow settings).

        A companion store rides in it as the ``store`` query parameter.
        """
        return self.client.url

    @url.setter
    def url(self, value: str | Callable[[], str]) -> None:
        self.client.url = value

    @property
    def store(self) -> str | None:
        """The companion store of an ``amqp://`` broker (None: ``$PIGEON_STORE``, if set)."""
        return self.client.store

    @store.setter
    def store(self, value: str | None) -> None:
        self.client.store = value

    @property
    def result_ttl(self) -> float:
        """Seconds a succeeded job and its result are kept."""
        return self.client.result_ttl

    @property
    def failed_ttl(self) -> float:
        """Seconds a failed or cancelled job is kept."""
        return self.client.failed_ttl

    @property
    def enqueue_hooks(self) -> list[EnqueueHook]:
        """Called with every batch about to be stored (see :attr:`Client.enqueue_hooks`)."""
        return self.client.enqueue_hooks

    @property
    def notifier(self) -> Notifier:
        """Wakes this process's workers (e.g. on a transaction's commit)."""
        return self.client.notifier

    @property
    def result_waiters(self) -> ResultWaiters:
        """This process's result waiters, woken by this process's workers."""
        return self.client.result_waiters

    # -- registration --------------------------------------------------------

    @overload
    def task(self, fn: Callable[Concatenate[JobContext, P], Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[Concatenate[JobContext, P], R], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, **options: Unpack[TaskOptionArgs]) -> _TaskDecorator: ...

    def task(  # type: ignore[misc]  # mypy cannot match the keyword-only overload
        self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskOptionArgs]
    ) -> Any:
        """Register a function as a task.

        ``async def`` functions run on the worker's event loop; plain functions in
        a thread pool, or in a process pool with ``executor="process"``.

        Args:
            options: ``name`` (on the wire; defaults to ``module.qualname``) and
                the fields of :class:`~pigeon.task.TaskOptions`, where each is described.
        """

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            name = options.get("name") or default_name(f)
            t: Task[Any, Any] = Task(self.client, f, name, task_options(f, options))
            if t.name in self.tasks and self.tasks[t.name].fn is not f:
                raise ConfigurationError(f"two tasks named {t.name!r}")
            self.tasks[t.name] = t
            return t

        return register(fn) if fn is not None else register

    def on(self, pattern: str, **options: Unpack[TaskOptionArgs]) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register an event handler for a topic pattern (``nfc.tag_read``, ``nfc.*``, ``**``).

        The handler is a task taking the event payload as its one parameter; each
        publish runs it as its own job, with these task options (as :meth:`task`'s).
        """
        pattern_regex(pattern)  # a bad pattern fails here, not at the first publish

        def register(fn: Callable[P, R]) -> Task[P, R]:
            named = options.copy()
            named["name"] = options.get("name") or f"{default_name(fn)}@{pattern}"
            t: Task[P, R] = self.task(**named)(fn)
            self.handlers.append((pattern, t))
            return t

        return register

    def publish(self, topic: str, payload: Any) -> list[JobHandle[Any]]:
        """Publish an event: one job per matching handler, in one round trip.

        Raises:
            TypeError: the payload is a mutable object, cannot be encoded, or
                does not fit a handler's parameter.
        """
        return self.portal_call(self.apublish(topic, payload))

    async def apublish(self, topic: str, payload: Any) -> list[JobHandle[Any]]:
        """Asynchronous :meth:`publish`.

        An event nobody handles is kept, cancelled, in the ``pigeon.unrouted``
        queue for ``failed_ttl`` seconds, so ``pigeon status`` shows it.
        """
        ids = await publish(self.client, self.handlers, topic, payload)
        return [JobHandle(self.client, i) for i in ids]

    @overload
    def service(self, fn: Callable[..., Coroutine[Any, Any, None]], /) -> Service: ...

    @overload
    def service(
        self,
        *,
        name: str | None = None,
        restart: RestartPolicy = "always",
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> Callable[[Callable[..., Coroutine[Any, Any, None]]], Service]: ...

    def service(  # type: ignore[misc]  # mypy cannot match the keyword-only overload
        self,
        fn: Callable[..., Coroutine[Any, Any, None]] | None = None,
        /,
        *,
        name: str | None = None,
        restart: RestartPolicy = "always",
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> Any:
        """Register a long-running ``async def`` the worker starts and supervises.

        A service without parameters runs once per worker; give instances
        arguments with :meth:`service_group`. ``restart`` is ``"always"``,
        ``"on-failure"`` or ``"never"``; ``backoff`` the first and the longest
        pause between restarts, doubling in between.
        """

        def register(f: Callable[..., Coroutine[Any, Any, None]]) -> Service:
            if not asyncio.iscoroutinefunction(f):
                raise ConfigurationError(f"{default_name(f)}: a service is an async def function")
            svc = Service(f, name or default_name(f), restart, backoff)
            params = [p for p in inspect.signature(f).parameters.values() if p.default is p.empty]
            if not params:
                self.services.append((svc, ()))
            return svc

        return register(fn) if fn is not None else register

    def service_group(self, service: Service, args: Iterable[Any]) -> None:
        """Run one instance of ``service`` per item of ``args`` (a tuple for several arguments)."""
        for item in args:
            self.services.append((service, item if isinstance(item, tuple) else (item,)))

    def schedule(
        self,
        task: Task[Any, Any],
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        missed: MissedPolicy = "once",
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> Schedule:
        """Run ``task`` periodically: a cron expression in ``tz``, or ``every`` seconds.

        Every worker runs the schedule; each tick is enqueued once however many
        there are. ``missed="once"`` runs the latest tick missed while no worker
        ran, ``"skip"`` runs none.

        Raises:
            ConfigurationError: a bad cron expression, interval or time zone.
            TypeError: the arguments do not fit the task.
        """
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        label = name or f"{task.name}[{cron or f'every {seconds}s'}]"
        if any(s.name == label for s in self.schedules):
            raise ConfigurationError(f"two schedules named {label!r}: pass name=")
        sched = Schedule(label, task, cron, seconds, tz, missed, tuple(args), dict(kwargs or {}))
        self.schedules.append(sched)
        return sched

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        missed: MissedPolicy = "once",
        **options: Unpack[TaskOptionArgs],
    ) -> Callable[[Callable[[], R] | Callable[[JobContext], R]], Task[[], R]]:
        """Register a task without parameters (or taking only a ``JobContext``) and run it
        periodically (see :meth:`schedule`)."""

        def register(fn: Callable[[], R] | Callable[[JobContext], R]) -> Task[[], R]:
            t: Task[[], R] = self.task(**options)(fn)
            self.schedule(t, cron=cron, every=every, tz=tz, missed=missed)
            return t

        return register

    # -- the broker (through the client) ------------------------------------

    async def connection(self) -> InstrumentedBroker:
        """This event loop's broker, opened on first use, behind the seam.

        Every method of the broker protocols is there; one the broker does not
        implement raises ``UnsupportedFeature`` (``capabilities`` says which).
        """
        return await self.client.connection()

    def portal_call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run a coroutine for synchronous callers, on the app's private loop."""
        return self.client.portal_call(coro)

    def _handles(self, ids: Sequence[str], jobs: Sequence[Job]) -> list[JobHandle[Any]]:
        return [JobHandle(self.client, i, j.task) for i, j in zip(ids, jobs, strict=True)]

    async def aenqueue(self, jobs: Sequence[Job]) -> list[JobHandle[Any]]:
        """Store built jobs; return their handles (a unique key's existing job where one is pending)."""
        return self._handles(await self.client.aenqueue(jobs), jobs)

    def enqueue(self, jobs: Sequence[Job]) -> list[JobHandle[Any]]:
        """Synchronous :meth:`aenqueue`."""
        return self._handles(self.client.enqueue(jobs), jobs)

    def enqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[JobHandle[Any]]:
        """Store jobs with the caller's connection, inside the caller's transaction.

        This process's workers are poked now, before the commit, and find nothing;
        other workers notice the commit themselves. A framework with commit hooks
        can call ``app.notifier.notify`` on commit to wake local workers at once.

        Raises:
            UnsupportedFeature: the broker cannot write in the caller's transaction.
            BrokerError: the insert failed.
        """
        return self._handles(self.client.enqueue_in(connection, jobs), jobs)

    async def aenqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[JobHandle[Any]]:
        """Asynchronous :meth:`enqueue_in` (an async driver connection, or a sync one)."""
        return self._handles(await self.client.aenqueue_in(connection, jobs), jobs)

    async def amigrate(self) -> list[str]:
        """Create or upgrade the broker's tables or schema; return the migrations applied."""
        return await self.client.amigrate()

    def migrate(self) -> list[str]:
        """Synchronous :meth:`amigrate` (also ``pigeon migrate APP``)."""
        return self.portal_call(self.amigrate())

    def metrics(self) -> dict[str, CallStats]:
        """Every broker call this app made so far, by method (see :meth:`Client.metrics`)."""
        return self.client.metrics()

    def swap_broker(self, url: str | Callable[[], str]) -> None:
        """Use another broker from now on, forgetting this app's open connections.

        Close them first (``close()``/``aclose()``); meant for tests and set-up code.
        """
        self.client.swap(url)

    def resolve_task(self, name: str) -> Task[Any, Any] | None:
        """The task a job names, or None. Workers ask this for every job.

        Override it to find tasks this process has not registered yet (the
        Django integration imports them by module path).
        """
        return self.tasks.get(name)

    def job(self, job_id: str) -> JobHandle[Any]:
        """A handle on a job by id, sent by any process."""
        return JobHandle(self.client, job_id)

    async def acancel(self, job_id: str) -> bool:
        """Cancel a job unless it has finished; True if it was cancelled (see :meth:`JobHandle.cancel`)."""
        return await self.client.acancel(job_id)

    def cancel(self, job_id: str) -> bool:
        """Synchronous :meth:`acancel`."""
        return self.client.cancel(job_id)

    # -- workers -------------------------------------------------------------

    def worker_defaults(self) -> WorkerConfig:
        """The settings ``pigeon worker APP`` starts from, under the environment and its options.

        Override it where the framework knows better (Django: the backend's QUEUES).
        """
        from pigeon.worker.config import WorkerConfig

        return WorkerConfig()

    def make_worker(self, config: WorkerConfig | None = None, **overrides: Any) -> Worker:
        """A worker for this app (see :class:`pigeon.worker.WorkerConfig` for options)."""
        from pigeon.worker.config import WorkerConfig
        from pigeon.worker.loop import Worker

        cfg = (config or WorkerConfig()).replace(**overrides)
        return Worker(self.client, self, cfg)

    @asynccontextmanager
    async def worker(self, config: WorkerConfig | None = None, **overrides: Any) -> AsyncIterator[Worker]:
        """Run a worker on the current event loop for the duration of the block.

        Leaving the block stops it gracefully (running jobs finish within the
        grace period; the rest are handed back).
        """
        w = self.make_worker(config, **overrides)
        runner = asyncio.create_task(w.run(install_signals=False), name="pigeon-worker")
        try:
            await w.started.wait()
            yield w
        finally:
            w.stop()
            await runner

    def run_worker_in_thread(self, config: WorkerConfig | None = None, **overrides: Any) -> WorkerThread:
        """Start a worker in a background thread of this process (for WSGI hosts, scripts).

        Returns a handle whose ``stop()`` shuts it down gracefully.
        """
        from pigeon.worker.thread import WorkerThread

        wt = WorkerThread(self.make_worker(config, **overrides))
        self.client.stop_at_exit(wt)
        wt.start()
        return wt

    # -- life cycle ----------------------------------------------------------

    async def aclose(self) -> None:
        """Close this event loop's broker connection."""
        await self.client.aclose()

    def close(self) -> None:
        """Close the connections synchronous calls opened.

        Called for you at interpreter exit, after any worker threads of this app
        were stopped gracefully; call it yourself to close sooner.
        """
        self.client.close()
