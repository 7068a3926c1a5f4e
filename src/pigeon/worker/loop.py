"""The worker: claim → run → settle, on one event loop, under one task group.

One :class:`asyncio.TaskGroup` owns the worker's loops (heartbeat, lifeline,
settler (``settler.py``), watcher) and a second one owns the running jobs. Shutdown stops
claiming, gives running jobs ``grace`` seconds, cancels the rest and hands
them back without spending an attempt, flushes every settle, then cancels the
loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

from pigeon.client import Client
from pigeon.errors import BrokerError
from pigeon.events import event_handlers
from pigeon.hooks import attempt_hooks
from pigeon.job import Claim, Outcome, OutcomeKind, WorkerInfo
from pigeon.policy import Ending, Raised, Released, Retention, Unrunnable, decide
from pigeon.registry import Registry
from pigeon.seam import InstrumentedBroker, SeamObserver
from pigeon.services import ServiceState, supervise
from pigeon.task import TaskOptions
from pigeon.worker.attempt import AttemptRunner, log_extra
from pigeon.worker.config import WorkerConfig
from pigeon.worker.executors import Executors
from pigeon.worker.identity import new_worker_id, worker_info
from pigeon.worker.progress import ProgressReporter
from pigeon.worker.settler import Settler
from pigeon.worker.ticker import raise_if_cancelling, run_schedules

log = logging.getLogger("pigeon.worker")


class Worker:
    """Runs the jobs of one registry (an app's tasks), through that app's client.

    Start it with ``await worker.run()``, ``app.worker()`` or ``app.run_worker_in_thread()``.
    """

    def __init__(self, client: Client, registry: Registry, config: WorkerConfig) -> None:
        self.client = client
        self.registry = registry
        self.config = config
        self._retention = Retention(client.result_ttl, client.failed_ttl)
        self.id = new_worker_id()
        self.started = asyncio.Event()
        self.stopped = threading.Event()
        self.processed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._claimed = asyncio.Event()  # set after each claim attempt
        self._stopping = False
        self._hard = asyncio.Event()
        self._starved = False
        # Keyed by (job id, token): the same job may come back to this worker under a new claim
        # while an answer about the old one is still on its way.
        self._running: dict[tuple[str, str], tuple[Claim, asyncio.Task[None]]] = {}
        self._lost: set[tuple[str, str]] = set()
        self._settler = Settler(client, self._wake.set)
        self._executors = Executors(config.thread_count, config.process_count)
        self._limited_queues = frozenset(q for q, _ in config.queue_limits)
        self._broker: InstrumentedBroker | None = None
        self._attempts: AttemptRunner | None = None
        self.observer: SeamObserver | None = None
        """Told what crosses the seam (set before ``run``; ``pigeon.metrics.JobMetrics``)."""
        self._started_at = time.time()
        self.services: dict[str, ServiceState] = {}

    # -- control -------------------------------------------------------------

    def stop(self, *, hard: bool = False) -> None:
        """Ask the worker to stop (graceful; ``hard`` skips the grace period). Thread-safe."""
        loop = self._loop
        if loop is None:
            self._stopping = True
            return
        if _on_loop(loop):
            self._request_stop(hard)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._request_stop, hard)

    def _request_stop(self, hard: bool) -> None:
        if self._stopping or hard:
            self._hard.set()
        self._stopping = True
        self._wake.set()

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stopping:
            log.warning("%s again: stopping now, handing running jobs back", name)
        else:
            log.info("%s: finishing running jobs (up to %s s), then stopping", name, self.config.grace)
        self._request_stop(hard=False)

    @property
    def busy_threads(self) -> int:
        """Job threads still running a function (after a stop: the ones past their grace)."""
        return self._executors.busy_threads

    def info(self) -> WorkerInfo:
        return worker_info(self.id, self.config, self._started_at, self.services.values())

    # -- the run -------------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> None:
        """Run until stopped (or, in burst mode, until nothing is left to do)."""
        self._loop = asyncio.get_running_loop()
        self._broker = await self.client.connection()
        if self.observer is not None:
            self._broker.observe(self.observer)
        self._progress = ProgressReporter(self.client, self._broker, self.registry.handlers)
        self._attempts = AttemptRunner(
            self.id, self.client, self.registry, self._broker, self._executors, self._progress
        )
        wake = self.client.notifier.subscribe()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        cfg = self.config
        log.info("worker %s up: queues %s, concurrency %d", self.id, ",".join(cfg.queues), cfg.concurrency)
        try:
            await self._register()
            if self._broker.routing_events is not None and self.registry.handlers:
                # events reach this worker only through queues bound to the broker's exchange
                await self._broker.bind_handlers(event_handlers(self.registry.handlers))
            async with asyncio.TaskGroup() as loops:
                background = [
                    loops.create_task(self._forward(wake), name="pigeon-wake"),
                    loops.create_task(self._watch(), name="pigeon-watch"),
                    loops.create_task(self._heartbeat(), name="pigeon-heartbeat"),
                    loops.create_task(self._lifeline(), name="pigeon-lifeline"),
                ]
                schedules, registered = self.registry.schedules, self.registry.services
                if schedules and not cfg.burst:
                    ticker = run_schedules(self.client, schedules)
                    background.append(loops.create_task(ticker, name="pigeon-scheduler"))
                services = None
                if cfg.services and registered and not cfg.burst:
                    services = loops.create_task(supervise(registered, self.services), name="pigeon-services")
                stopping, busy = (lambda: self._stopping), (lambda: bool(self._running))
                settling = self._settler.run(self._broker, stopping, busy, self._hard)
                settler = loops.create_task(settling, name="pigeon-settler")
                self.started.set()
                async with asyncio.TaskGroup() as jobs:
                    await self._claim_loop(jobs)
                    if services is not None:  # stop producers before draining what they produced
                        services.cancel()
                        await asyncio.wait([services])
                    await self._drain()
                self._stopping = True
                await self._settler.last(settler)
                for t in background:
                    t.cancel()
        finally:
            await self._close(wake, install_signals)

    async def _close(self, wake: asyncio.Event, install_signals: bool) -> None:
        assert self._loop is not None and self._broker is not None
        self.client.notifier.unsubscribe(self._loop, wake)
        if self.observer is not None:
            self._broker.unobserve(self.observer)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.remove_signal_handler(sig)
        await self._executors.close()
        try:
            if self._broker.capabilities.inspect:  # else recover() forgets it once silent
                await self._broker.unregister_worker(self.id)
        except BrokerError as exc:
            log.warning("could not unregister worker %s: %s", self.id, exc)
        log.info("worker %s stopped after %d jobs", self.id, self.processed)
        self.stopped.set()

    async def _register(self) -> None:
        """A first heartbeat, without leases, registers the worker; the loop's next ones would too."""
        assert self._broker is not None
        try:
            await self._broker.heartbeat(self.info(), [], self.config.lease)
        except BrokerError as exc:
            log.warning("heartbeat failed: could not register worker %s yet: %s", self.id, exc)

    async def _claim_loop(self, jobs: asyncio.TaskGroup) -> None:
        assert self._broker is not None
        cfg = self.config
        while not self._stopping:
            self._wake.clear()
            # Outcomes beyond one concurrency's worth take slots: while settles lag (a slow
            # store, big results) the worker stops claiming instead of holding results unbounded.
            backlog = max(0, self._settler.pending - cfg.concurrency)
            free = cfg.concurrency - len(self._running) - backlog
            if free > 0:
                settled = self._settler.rounds
                try:
                    claims, want = await self._claim(free)
                except BrokerError as exc:
                    self._claimed.set()
                    log.error("claim failed, retrying: %s", exc)
                    await self._pause(min(cfg.poll * 4, 5.0))
                    continue
                for claim in claims:
                    task = jobs.create_task(self._run_job(claim), name=f"pigeon-job-{claim.job.id}")
                    self._running[(claim.job.id, claim.token)] = (claim, task)
                    task.add_done_callback(functools.partial(self._never_started, claim))
                self._claimed.set()  # after the jobs, which then start before the watch's next wait
                if len(claims) == want:
                    self._starved = False
                    continue
                self._starved = True
                # An outcome may make a job due again (an immediate retry): a burst worker is
                # idle only when nothing waits to be settled and nothing was settled during the
                # claim that just came back empty.
                if cfg.burst and not self._running and self._settler.idle_since(settled):
                    return
            else:
                self._starved = False
            await self._wake.wait()

    async def _claim(self, free: int) -> tuple[list[Claim], int]:
        """Claim up to ``free`` jobs, within per-queue limits; return them and how many were sought."""
        assert self._broker is not None
        cfg = self.config
        if not cfg.queue_limits:
            want = min(free, cfg.batch)
            return await self._broker.claim(self.id, cfg.queues, want, cfg.lease), want
        limits = dict(cfg.queue_limits)
        in_flight = Counter(claim.job.queue for claim, _ in self._running.values())
        groups: list[tuple[tuple[str, ...], int]] = [((q,), cap - in_flight[q]) for q, cap in limits.items()]
        groups.append((tuple(q for q in cfg.queues if q not in limits), free))
        claims: list[Claim] = []
        sought = 0
        for queues, room in groups:
            want = min(room, free - len(claims), cfg.batch)
            if queues and want > 0:
                claims += await self._broker.claim(self.id, queues, want, cfg.lease)
                sought += want
        return claims, sought

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _drain(self) -> None:
        """Give running jobs one grace period in all (a second signal ends it at once)."""
        if not self._running:
            return
        tasks = [t for _, t in self._running.values()]
        finished = asyncio.ensure_future(asyncio.wait(tasks))
        hard = asyncio.ensure_future(self._hard.wait())
        try:
            await asyncio.wait({finished, hard}, timeout=self.config.grace, return_when="FIRST_COMPLETED")
        finally:
            finished.cancel()
            hard.cancel()
        left = [t for _, t in self._running.values() if not t.done()]
        if left:
            log.warning("handing %d unfinished jobs back", len(left))
            for t in left:
                t.cancel()

    # -- one job -------------------------------------------------------------

    def _never_started(self, claim: Claim, _: asyncio.Task[None]) -> None:
        """Clean up after a job task cancelled before its first step (its ``finally`` never ran)."""
        key = (claim.job.id, claim.token)
        if key not in self._running:
            return
        del self._running[key]
        if key not in self._lost:
            self._settler.put(Outcome(job_id=claim.job.id, token=claim.token, kind=OutcomeKind.RELEASE))
        self._lost.discard(key)
        self._wake.set()

    async def _run_job(self, claim: Claim) -> None:
        job = claim.job
        key = (job.id, claim.token)
        outcome: Outcome | None = None
        try:
            outcome = await self._attempt(claim)
        except asyncio.CancelledError:
            if key not in self._lost:
                outcome = decide(claim, None, Released(), time.time(), self._retention)
                log.info("job handed back unfinished", extra=log_extra(claim))
        else:
            # A last report must land before the settle; when stopping, the known outcome wins.
            if self._progress.reporting(job.id):
                with contextlib.suppress(asyncio.CancelledError):
                    await self._progress.flush(job.id)
        finally:
            self._running.pop(key, None)
            self._lost.discard(key)
            self.processed += 1
            if outcome is not None:
                self._settler.put(outcome)
            limited = job.queue in self._limited_queues
            if not self._starved or limited or self.config.burst or self._stopping:
                self._wake.set()

    async def _attempt(self, claim: Claim) -> Outcome | None:
        """Run one attempt; the retry policy (pigeon.policy) turns its ending into the outcome.

        None: the job expired before it started, and was cancelled instead.
        """
        if claim.job.expires_at is not None and time.time() >= claim.job.expires_at:
            await self._expire(claim)
            return None
        task = self.registry.resolve_task(claim.job.task)
        options = None if task is None else task.defaults
        assert self._attempts is not None
        hooks = self.registry.job_hooks
        if not hooks:
            return self._outcome(claim, options, await self._attempts.run(claim, task))
        with attempt_hooks(hooks, claim.job, claim.attempt) as ending:
            ended = await self._attempts.run(claim, task)
            outcome = self._outcome(claim, options, ended)
            ending.report(outcome, ended.error if isinstance(ended, Raised | Unrunnable) else None)
            return outcome

    def _outcome(self, claim: Claim, options: TaskOptions | None, ending: Ending) -> Outcome:
        """The retry policy's outcome for an attempt's ending, reported (logs, an early wake)."""
        outcome = decide(claim, options, ending, time.time(), self._retention)
        if outcome.kind is not OutcomeKind.COMPLETE:  # the hot path has nothing to report
            self._report(outcome, ending, log_extra(claim))
        return outcome

    async def _expire(self, claim: Claim) -> None:
        """Cancel a job claimed past its expiry instead of running it; the cancel settles it."""
        extra = log_extra(claim)
        assert self._broker is not None
        log.warning("job expired before it started; cancelled, not run", extra=extra)
        try:
            await self._broker.cancel(claim.job.id, time.time() + self.client.failed_ttl)
        except BrokerError as exc:  # the lease runs out and the next claim tries again
            log.warning("could not cancel the expired job: %s", exc, extra=extra)
        self.client.result_waiters.done([claim.job.id])

    def _report(self, outcome: Outcome, ending: Ending, extra: dict[str, Any]) -> None:
        """Log a failed attempt; look again when a retry falls due before the next poll."""
        info = outcome.error
        wait = None if outcome.run_at is None else max(0.0, outcome.run_at - time.time())
        if outcome.kind is OutcomeKind.FAIL and info is not None and not isinstance(ending, Unrunnable):
            # exc_info: Sentry and other logging integrations get the stack trace.
            exc = ending.error if isinstance(ending, Raised) else None
            log.error("job failed: %s: %s", info.type, info.message, exc_info=exc, extra=extra)
        elif outcome.kind is OutcomeKind.RETRY and info is not None:
            what = (info.type, info.message, wait)
            log.warning("attempt failed (%s: %s); retrying in %.2f s", *what, extra=extra)
        if wait is not None and wait < self.config.poll:
            asyncio.get_running_loop().call_later(wait, self._wake.set)

    # -- background loops ----------------------------------------------------

    async def _forward(self, wake: asyncio.Event) -> None:
        """Wake the claim loop when this process enqueues."""
        while True:
            await wake.wait()
            wake.clear()
            await self._nudge()

    async def _nudge(self) -> None:
        """Wake a starved claim loop, and return once its claim has gone out.

        The caller's next step may be a round trip of its own (a broker's wait()
        can open with one); issued first, it would delay the claim behind it.
        """
        if not self._starved:
            return
        self._claimed.clear()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.poll):
                await self._claimed.wait()

    async def _watch(self) -> None:
        """Wake the claim loop when another process may have enqueued, or a delay fell due."""
        assert self._broker is not None
        pause = self.config.poll
        while True:
            raise_if_cancelling()  # a driver may have swallowed the stop's cancel
            try:
                await self._broker.wait(self.config.queues, self.config.poll)
                pause = self.config.poll
            except BrokerError as exc:
                log.warning("wake-up watch failed, retrying in %.2f s: %s", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
            await self._nudge()

    async def _heartbeat(self) -> None:
        assert self._broker is not None
        while True:
            await asyncio.sleep(self.config.heartbeat)
            leases = self._leases()
            try:
                lost = await self._broker.heartbeat(self.info(), list(leases.items()), self.config.lease)
            except BrokerError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for jid in lost:
                # The answer is about the token sent; the job may be running here under a new one.
                key = (jid, leases[jid])
                entry = self._running.get(key)
                if entry is not None:
                    log.warning(
                        "lease lost (the job was cancelled, or recovered for another worker); stopping it",
                        extra={"job_id": jid},
                    )
                    self._lost.add(key)
                    entry[1].cancel()

    def _leases(self) -> dict[str, str]:
        """The token of each job whose lease this worker holds: one per job, the newest claim's.

        A finished job stays RUNNING in the broker until its outcome lands; its lease is kept
        too, or a slow settle would let the job be recovered and run again. A job claimed
        again holds no lease under its old token: only the new claim's is renewed.
        """
        leases = self._settler.tokens()
        leases.update({jid: token for jid, token in self._running})
        return leases

    async def _lifeline(self) -> None:
        """Recover jobs of dead workers and prune expired ones, jittered so workers spread out."""
        assert self._broker is not None
        cfg = self.config
        next_prune = time.monotonic() + random.uniform(0, cfg.prune_every)
        while True:
            await asyncio.sleep(cfg.recover_every * random.uniform(0.5, 1.0))
            try:
                n = await self._broker.recover(cfg.dead_after, time.time() + self.client.failed_ttl)
                if n:
                    log.warning("recovered %d jobs from lost workers", n)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + cfg.prune_every
                    pruned = await self._broker.prune()
                    if pruned:
                        log.info("pruned %d expired jobs", pruned)
            except BrokerError as exc:
                log.warning("lifeline sweep failed: %s", exc)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
