"""Hooks around every job attempt: error reporters, tracing, your own bookkeeping.

Subclass :class:`JobHook`, override what you need and register it with
``app.job_hooks.append(MyHook())``. Workers call, for each attempt, in order:

- ``around(job, attempt)``: a context manager entered before the attempt and left
  after the calls below (a tracing span stays current through them);
- ``on_start(job, attempt)``;
- then one of ``on_success``; or ``on_failure(job, attempt, error)`` (every attempt
  that raised) followed by ``on_retry`` (it will run again) or ``on_dead`` (it
  failed for good: no attempts left, or an error it does not retry on).

A hook that raises is logged and ignored: a broken reporter never stops a job.
Jobs recovered from a dead worker are settled by the broker, not a worker, and
call no hook.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from pigeon.errors import Retry
from pigeon.job import Job, Outcome, OutcomeKind

log = logging.getLogger("pigeon.hooks")


class JobHook:
    """Override any of these; each default does nothing."""

    def around(self, job: Job, attempt: int) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def on_start(self, job: Job, attempt: int) -> None:
        """The attempt is about to run."""

    def on_success(self, job: Job, attempt: int) -> None:
        """The attempt returned; the job succeeded."""

    def on_failure(self, job: Job, attempt: int, error: BaseException | None) -> None:
        """The attempt raised (``error``; None when only its description survived, as from a process)."""

    def on_retry(self, job: Job, attempt: int, error: BaseException | None) -> None:
        """The failed attempt will be retried."""

    def on_dead(self, job: Job, attempt: int, error: BaseException | None) -> None:
        """The job failed for good."""


def _call(hook: JobHook, name: str, *args: Any) -> None:
    try:
        getattr(hook, name)(*args)
    except Exception:  # a broken reporter must never stop a job
        log.exception("job hook %s.%s failed", type(hook).__name__, name)


@contextlib.contextmanager
def attempt_hooks(hooks: Sequence[JobHook], job: Job, attempt: int) -> Iterator[_Ending]:
    """Enter every hook's ``around`` and call ``on_start``; the caller reports the ending."""
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            try:
                stack.enter_context(hook.around(job, attempt))
            except Exception:
                log.exception("job hook %s.around failed", type(hook).__name__)
        for hook in hooks:
            _call(hook, "on_start", job, attempt)
        yield _Ending(hooks, job, attempt)


class _Ending:
    def __init__(self, hooks: Sequence[JobHook], job: Job, attempt: int) -> None:
        self.hooks, self.job, self.attempt = hooks, job, attempt

    def report(self, outcome: Outcome | None, error: BaseException | None) -> None:
        """Tell the hooks how the attempt ended (nothing for a release or a deferral)."""
        if outcome is None:
            return
        args = (self.job, self.attempt)
        if outcome.kind is OutcomeKind.COMPLETE:
            for hook in self.hooks:
                _call(hook, "on_success", *args)
        elif outcome.kind in (OutcomeKind.RETRY, OutcomeKind.FAIL):
            then = "on_retry" if outcome.kind is OutcomeKind.RETRY else "on_dead"
            for hook in self.hooks:
                if not isinstance(error, Retry):  # `raise Retry` is a request, not a failure
                    _call(hook, "on_failure", *args, error)
                _call(hook, then, *args, error)
