"""The one seam every worker → broker call passes through: timed, counted, translated.

Brokers stay free of logging and metrics; this facade records, per method, how
many calls were made, how long they took and how many failed, and logs slow
calls at DEBUG. Brokers translate their drivers' errors into :class:`BrokerError`;
whatever else escapes one (a timeout, an OS error, a bug in a third-party
broker) is translated here, so the worker's loops, which survive a failed
broker call, never meet an error they do not expect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pigeon.brokers.base import Broker
from pigeon.errors import BrokerConnectionError, BrokerError, PigeonError
from pigeon.job import Claim, Outcome

log = logging.getLogger("pigeon.broker")

_SLOW = 0.25


@dataclass(slots=True)
class CallStats:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0


class SeamObserver(Protocol):
    """Told what crossed the seam (``pigeon.metrics.JobMetrics`` is one)."""

    def claimed(self, claims: Sequence[Claim]) -> None: ...

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        """Only the outcomes the broker accepted."""
        ...


class InstrumentedBroker:
    """Wraps a broker; ``stats`` maps method names to :class:`CallStats`."""

    def __init__(self, broker: Broker, observer: SeamObserver | None = None) -> None:
        self.inner = broker
        self.stats: dict[str, CallStats] = {}
        self.observer = observer

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, name)
        stats = self.stats.setdefault(name, CallStats())

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            stats.calls += 1
            try:
                result = await method(*args, **kwargs)
            except PigeonError:
                stats.errors += 1
                raise
            except (TimeoutError, OSError) as exc:
                stats.errors += 1
                raise BrokerConnectionError(f"broker {name}: {type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                stats.errors += 1
                raise BrokerError(f"broker {name}: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                stats.errors += 1
                raise
            else:
                if self.observer is not None:
                    try:
                        self._observe(name, args, result)
                    except Exception:  # metrics must never cost a claim or a settle
                        log.exception("the seam's observer failed on %s", name)
                return result
            finally:
                spent = time.perf_counter() - start
                stats.seconds += spent
                if spent > _SLOW:
                    log.debug("broker %s took %.3f s", name, spent)

        setattr(self, name, timed)  # later calls skip __getattr__
        return timed

    def _observe(self, name: str, args: tuple[Any, ...], result: Any) -> None:
        observer = self.observer
        assert observer is not None
        if name == "claim":
            observer.claimed(result)
        elif name == "settle":
            observer.settled([o for o, ok in zip(args[0], result, strict=True) if ok])
