"""Arguments are checked in the caller and decoded to their types in the worker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from uuid import UUID, uuid4

import msgspec
import pytest

from pigeon import App, ConfigurationError, DecodeError, InvalidTask
from pigeon.codec import ArgCodec, freeze
from pigeon.job import Job


@dataclasses.dataclass(frozen=True)
class Address:
    street: str
    number: int


class Badge(msgspec.Struct, frozen=True):
    uid: str
    tags: tuple[str, ...] = ()


def order(
    customer: int, when: datetime, amount: Decimal, ref: UUID, to: Address, *notes: str, **meta: int
) -> None: ...


def test_round_trip_restores_types() -> None:
    sig = ArgCodec(order)
    ref = uuid4()
    when = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    payload = sig.encode_args((7, when, Decimal("9.99"), ref, Address("Main", 1), "a", "b"), {"x": 1})
    args, kwargs = sig.decode_args(payload)
    assert args == (7, when, Decimal("9.99"), ref, Address("Main", 1), "a", "b")
    assert kwargs == {"x": 1}


def test_wrong_arity_names_the_problem() -> None:
    sig = ArgCodec(order)
    with pytest.raises(TypeError, match="missing a required argument: 'when'"):
        sig.encode_args((1,), {})


def test_wrong_type_names_the_argument() -> None:
    sig = ArgCodec(order)
    with pytest.raises(TypeError, match="argument 'customer'"):
        sig.encode_args(("seven", datetime.now(UTC), Decimal(1), uuid4(), Address("M", 1)), {})


def test_unencodable_value_names_the_argument() -> None:
    def takes(name: str, blob: object) -> None: ...

    with pytest.raises(TypeError, match="argument 'blob' cannot be encoded"):
        ArgCodec(takes).encode_args(("x", object()), {})


def test_frozen_containers_encode_again() -> None:
    """A task may pass the frozen arguments it received on to another task."""

    def takes(data: dict[str, list[int]]) -> None: ...

    sig = ArgCodec(takes)
    args, _ = sig.decode_args(sig.encode_args(({"a": [1, 2]},), {}))
    assert sig.decode_args(sig.encode_args(args, {}))[0] == args


def test_freeze_is_deep() -> None:
    frozen = freeze({"a": [1, {"b": [2]}], "s": {3}})
    assert isinstance(frozen, MappingProxyType)
    assert frozen["a"] == (1, MappingProxyType({"b": (2,)}))
    assert frozen["s"] == frozenset({3})
    with pytest.raises(TypeError):
        frozen["a"][1]["b"] = 1


def test_struct_arguments() -> None:
    def read(badge: Badge) -> None: ...

    sig = ArgCodec(read)
    (badge,), _ = sig.decode_args(sig.encode_args((Badge("04:AB", ("staff",)),), {}))
    assert badge == Badge("04:AB", ("staff",))


def test_undecodable_payload_is_a_decode_error() -> None:
    def f(n: int) -> None: ...

    with pytest.raises(DecodeError):
        ArgCodec(f).decode_args(b"not json")
    with pytest.raises(DecodeError):
        ArgCodec(f).decode_args(b'{"n": "x"}')


def test_typed_result() -> None:
    def f() -> datetime:
        raise NotImplementedError

    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert ArgCodec(f).decode_result(msgspec.json.encode(when)) == when


def test_job_envelope_round_trip() -> None:
    job = Job(id="x", task="t", payload=msgspec.Raw(b'{"a":1}'), priority=5, run_at=1.5)
    assert Job.decode(job.encode()) == job


def test_send_checks_arguments_before_any_io() -> None:
    app = App("memory://")

    @app.task
    def resize(path: str, width: int) -> str:
        return path

    with pytest.raises(TypeError, match="argument 'width'"):
        resize.send("a.png", "wide")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="too many positional arguments"):
        resize.send("a.png", 1, 2)  # type: ignore[call-arg]


def test_task_definition_errors() -> None:
    app = App("memory://")
    with pytest.raises(InvalidTask):
        app.task(executor="async")(lambda: None)
    with pytest.raises(ValueError, match="priority"):
        app.task(priority=101)(lambda: None)

    async def coro() -> None: ...

    with pytest.raises(InvalidTask):
        app.task(executor="process")(coro)


def test_option_errors() -> None:
    app = App("memory://")

    @app.task
    def f() -> None: ...

    with pytest.raises(ValueError, match="aware"):
        f.options(run_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="priority"):
        f.options(priority=-101)


def test_duplicate_task_names_are_refused() -> None:
    app = App("memory://")

    def f() -> None: ...

    def g() -> None: ...

    app.task(name="same")(f)
    with pytest.raises(ConfigurationError):
        app.task(name="same")(g)


def test_bad_urls() -> None:
    with pytest.raises(ConfigurationError, match="no scheme"):
        App("jobs.db")
    app = App("ftp://nowhere")
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme"):
        _ = app.job("x").status
    app.close()
