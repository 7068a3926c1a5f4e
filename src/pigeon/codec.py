"""Arguments and results on the wire: msgspec JSON, typed decoding, deep freezing.

A job's payload is a JSON object of the function's bound arguments, by
parameter name, encoded once at send time. The worker decodes it against the
function's annotations (so ``datetime``, ``UUID``, ``Decimal``, msgspec
Structs and dataclasses come back as themselves), then deep-freezes it: lists
become tuples, dicts read-only mappings, sets frozensets. Never pickle.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from pigeon import limits
from pigeon.errors import DecodeError


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, frozenset | set):
        return list(obj)
    raise NotImplementedError(f"objects of type {type(obj).__qualname__} cannot be encoded")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_any_decoder = msgspec.json.Decoder()
# Everything msgspec raises for a value it cannot write: a type it does not know, a lone
# surrogate in a string (UnicodeEncodeError), nesting past the interpreter's recursion limit.
_UNENCODABLE = (
    NotImplementedError,
    msgspec.EncodeError,
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
)


def encode(value: Any) -> bytes:
    """JSON bytes for a value; ``TypeError`` when it cannot be encoded."""
    try:
        return _encoder.encode(value)
    except _UNENCODABLE as exc:
        raise TypeError(_reason(exc)) from None


def encode_sendable(value: Any, what: str) -> bytes:
    """:func:`encode`, then the send-time limits of :mod:`pigeon.limits`.

    Raises:
        TypeError: ``value`` cannot be encoded, or breaks a limit; the message names ``what``.
    """
    data = encode(value)
    limits.check(what, data, {"value": value}, wrapped=0)
    return data


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"nested deeper than the limit of {limits.MAX_DEPTH} levels"
    if isinstance(exc, UnicodeEncodeError):
        return f"a string cannot be written as UTF-8 ({exc.reason} at {exc.start})"
    return str(exc)


def decode_any(data: bytes) -> Any:
    return _any_decoder.decode(data)


def freeze(value: Any) -> Any:
    """A deep-frozen view of plain decoded data: tuples, read-only mappings, frozensets."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, set):
        return frozenset(freeze(v) for v in value)
    return value


class ArgCodec:
    """How one function's arguments are bound, encoded, checked and decoded."""

    def __init__(self, fn: Callable[..., Any], *, skip_first: bool = False) -> None:
        self._fn = fn
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        self.context_param: str | None = params[0].name if skip_first and params else None
        if skip_first:
            params = params[1:]
        self._sig = sig.replace(parameters=params)
        self.first_param: str | None = params[0].name if params else None
        self._decoder: msgspec.json.Decoder[Any] | None = None
        self._result_decoder: msgspec.json.Decoder[Any] | None = None

    def encode_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """Bind, encode and check arguments against the signature.

        Raises:
            TypeError: wrong arity, or an argument that cannot be encoded or
                does not match its annotation; the message names it.
        """
        name = getattr(self._fn, "__qualname__", repr(self._fn))
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}") from None
        arguments = dict(bound.arguments)
        data = _encode_arguments(name, arguments)
        limits.check(f"{name}()", data, arguments)
        try:
            self.decoder().decode(data)
        except msgspec.ValidationError as exc:
            raise TypeError(f"{name}(): {_name_argument(str(exc))}") from None
        return data

    def encode_partial(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """Encode the arguments given so far (a workflow step fills in the rest).

        Raises:
            TypeError: the arguments cannot bind, or cannot be encoded.
        """
        name = getattr(self._fn, "__qualname__", repr(self._fn))
        try:
            bound = self._sig.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}") from None
        arguments = dict(bound.arguments)
        data = _encode_arguments(name, arguments)
        limits.check(f"{name}()", data, arguments)
        return data

    def first_unbound(self, bound: dict[str, Any]) -> str | None:
        """The first named parameter ``bound`` leaves without a value."""
        for p in self._sig.parameters.values():
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in bound:
                return p.name
        return None

    def decoder(self) -> msgspec.json.Decoder[Any]:
        if self._decoder is None:
            hints = _hints(self._fn)
            fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
            for p in self._sig.parameters.values():
                tp = hints.get(p.name, Any)
                if p.kind is p.VAR_POSITIONAL:
                    fields.append((p.name, tuple[tp, ...], ()))  # type: ignore[valid-type]
                elif p.kind is p.VAR_KEYWORD:
                    fields.append((p.name, dict[str, tp], {}))  # type: ignore[valid-type]
                elif p.default is p.empty:
                    fields.append((p.name, tp))
                else:
                    fields.append((p.name, tp, msgspec.field(default_factory=_const(p.default))))
            try:
                struct = msgspec.defstruct("Arguments", fields, forbid_unknown_fields=True)
                self._decoder = msgspec.json.Decoder(struct)
            except TypeError:  # an annotation msgspec cannot decode into: take plain JSON
                plain = [(f[0], Any, *f[2:]) for f in fields]
                self._decoder = msgspec.json.Decoder(msgspec.defstruct("Arguments", plain))
        return self._decoder

    def decode_args(self, payload: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for a call, decoded and frozen.

        Raises:
            DecodeError: the payload does not fit the signature.
        """
        try:
            values = self.decoder().decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"cannot decode arguments: {exc}") from exc
        params = self._sig.parameters.values()
        args, kwargs = call_arguments(params, {p.name: freeze(getattr(values, p.name)) for p in params})
        return tuple(args), kwargs

    def decode_result(self, data: bytes) -> Any:
        if self._result_decoder is None:
            rt = _hints(self._fn).get("return", Any)
            try:
                self._result_decoder = msgspec.json.Decoder(rt)
            except TypeError:
                self._result_decoder = msgspec.json.Decoder()
        try:
            return self._result_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"cannot decode result: {exc}") from exc


def _encode_arguments(name: str, arguments: dict[str, Any]) -> bytes:
    try:
        return _encoder.encode(arguments)
    except _UNENCODABLE as exc:
        for key, value in arguments.items():
            try:
                _encoder.encode(value)
            except _UNENCODABLE as inner:
                raise TypeError(f"{name}(): argument {key!r} cannot be encoded: {_reason(inner)}") from None
        raise TypeError(f"{name}(): the arguments cannot be encoded: {_reason(exc)}") from None


def call_arguments(
    params: Iterable[inspect.Parameter], values: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for a call, from argument values by parameter name.

    ``*args`` and ``**kwargs`` parameters hold a sequence and a mapping; names missing from
    ``values`` are left to their defaults.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in params:
        if p.name not in values:
            continue
        value = values[p.name]
        if p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        elif p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable forward references: decode as plain JSON
        return {}


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


def _name_argument(message: str) -> str:
    # msgspec says "... - at `$.width`"; the caller knows arguments by name.
    head, sep, path = message.rpartition(" - at `$.")
    if not sep:
        return message
    return f"argument {path.rstrip('`').split('.')[0].split('[')[0]!r}: {head}"


def is_frozen_dataclass(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and obj.__dataclass_params__.frozen  # type: ignore[union-attr]
