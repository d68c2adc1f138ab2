"""Lexum values in Python and on the wire.

A value is an `int`, a `bool`, a `str` or a `list` of values, exactly the
types of the language. `True` is a `bool`, never the int 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lexum.v1 import types_pb2

#: A Lexum value.
Value = bool | int | str | list["Value"]

#: Deepest list nesting accepted, as in the Rust SDK.
MAX_DEPTH = 8


def to_wire(value: Value, depth: int = 0) -> types_pb2.Value:
    """A Python value as a wire `Value`."""
    if depth > MAX_DEPTH:
        raise ValueError(f"lists nest deeper than {MAX_DEPTH}")
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return types_pb2.Value(bool=value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} does not fit in a Lexum int (64 bits)")
        return types_pb2.Value(int=value)
    if isinstance(value, str):
        return types_pb2.Value(str=value)
    if isinstance(value, list):
        items = [to_wire(item, depth + 1) for item in value]
        return types_pb2.Value(list=types_pb2.ValueList(items=items))
    raise TypeError(f"{type(value).__name__} is not a Lexum value (int, bool, str or list)")


def from_wire(value: types_pb2.Value, depth: int = 0) -> Value:
    """A wire `Value` as a Python value (an unset value reads as 0)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"lists nest deeper than {MAX_DEPTH}")
    kind = value.WhichOneof("kind")
    if kind == "bool":
        return value.bool
    if kind == "str":
        return value.str
    if kind == "list":
        return [from_wire(item, depth + 1) for item in value.list.items]
    return value.int


def named_to_wire(values: Mapping[str, Value]) -> list[types_pb2.NamedValue]:
    """Named values (fields, arguments) for the wire, in the mapping's order."""
    return [types_pb2.NamedValue(name=name, value=to_wire(v)) for name, v in values.items()]


def named_from_wire(values: Iterable[types_pb2.NamedValue]) -> dict[str, Value]:
    """Named values from the wire, in their order."""
    return {nv.name: from_wire(nv.value) for nv in values}


def split_target(target: str) -> tuple[str, str]:
    """`Domain.field` or `Kind[key].field` split after the domain (a key
    may contain dots)."""
    target = target.strip()
    open_at = target.find("[")
    if open_at != -1 and "." not in target[:open_at]:
        close_at = target.find("]", open_at)
        if close_at != -1 and target[close_at + 1 : close_at + 2] == "." and target[close_at + 2 :]:
            return target[: close_at + 1], target[close_at + 2 :]
    elif "." in target:
        domain, field = target.split(".", 1)
        if domain and field:
            return domain, field
    raise ValueError(f"malformed target `{target}`: expected Domain.field or Kind[key].field")


def display(value: Value) -> str:
    """A value in the `lexumctl set` syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return "[" + ", ".join(display(item) for item in value) + "]"
