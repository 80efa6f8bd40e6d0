"""Wire-type checks for betterproto2 messages (betterproto2 does not check them). No I/O."""

from __future__ import annotations

from typing import Any, NoReturn

import betterproto2

from ..errors import InvalidArgument

__all__ = ["Checked", "check_wire_types"]


class Checked:
    """A message read by a hand-written parser that accepted only the wire types it expects
    (codecs.kserve_grpc.parse_infer_request): nothing left to check."""

    __slots__ = ()


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    betterproto2.TYPE_STRING: (str,),
    betterproto2.TYPE_BYTES: (bytes,),
    betterproto2.TYPE_BOOL: (bool,),
    betterproto2.TYPE_FLOAT: (float, int),
    betterproto2.TYPE_DOUBLE: (float, int),
    **{
        t: (int,)
        for t in (
            betterproto2.TYPE_ENUM,
            betterproto2.TYPE_INT32,
            betterproto2.TYPE_INT64,
            betterproto2.TYPE_UINT32,
            betterproto2.TYPE_UINT64,
            betterproto2.TYPE_SINT32,
            betterproto2.TYPE_SINT64,
            betterproto2.TYPE_FIXED32,
            betterproto2.TYPE_SFIXED32,
            betterproto2.TYPE_FIXED64,
            betterproto2.TYPE_SFIXED64,
        )
    },
}
_NUMERIC: frozenset[str] = frozenset(
    t for t, types in _SCALAR_TYPES.items() if types != (str,) and types != (bytes,)
)


def check_wire_types(msg: Any, where: str = "") -> None:
    """Raise InvalidArgument if a decoded message holds a value of the wrong kind.

    betterproto2 does not check wire types while parsing: a varint sent for a message,
    string or bytes field (or a length-delimited value for a scalar one) is stored as it came,
    e.g. ``PredictRequest(model_spec=0)`` from the two bytes ``08 00``, and code reading the
    field then fails as if the server were broken. Repeated numeric fields are not walked
    (numpy reads ints and floats alike, and they may be long); repeated strings, bytes and
    messages are.
    """
    if isinstance(msg, Checked):
        return
    meta_of = msg._betterproto
    for name, meta in meta_of.meta_by_field_name.items():
        value = getattr(msg, name)
        path = f"{where}.{name}" if where else name
        if value is None:
            continue
        kind = meta.proto_type
        if kind == betterproto2.TYPE_MAP:
            if not isinstance(value, dict):
                _wrong(path)
            key_meta, value_meta = meta.map_meta
            for key, item in value.items():
                _check_scalar(key_meta.proto_type, key, path)
                if value_meta.proto_type == betterproto2.TYPE_MESSAGE:
                    if not isinstance(item, betterproto2.Message):
                        _wrong(f"{path}[{key!r}]")
                    check_wire_types(item, f"{path}[{key!r}]")
                else:
                    _check_scalar(value_meta.proto_type, item, f"{path}[{key!r}]")
            continue
        if meta.repeated:
            if not isinstance(value, list):
                _wrong(path)
            if kind in _NUMERIC:
                continue
            for index, item in enumerate(value):
                _check_one(meta, meta_of.cls_by_field.get(name), item, f"{path}[{index}]")
            continue
        _check_one(meta, meta_of.cls_by_field.get(name), value, path)


def _check_one(meta: Any, cls: type | None, value: Any, path: str) -> None:
    if meta.proto_type != betterproto2.TYPE_MESSAGE:
        _check_scalar(meta.proto_type, value, path)
    elif meta.unwrap:  # a wrapper (Int64Value, ...) read as its plain value
        inner = meta.unwrap()._betterproto.meta_by_field_name["value"]
        _check_scalar(inner.proto_type, value, path)
    elif cls is None or not isinstance(value, cls):
        _wrong(path)
    else:
        check_wire_types(value, path)


def _check_scalar(kind: str, value: Any, path: str) -> None:
    types = _SCALAR_TYPES.get(kind)
    if types is None or not isinstance(value, types):
        _wrong(path)
    if types == (int,) and isinstance(value, bool):
        _wrong(path)


def _wrong(path: str) -> NoReturn:
    raise InvalidArgument(
        f"Cannot decode the request message: field {path} was sent with the wrong wire type"
    )
