"""Reading values out of protobuf Structs (Envoy's dynamic metadata), one set of rules for the whole ext_proc.

Accepts a Struct or its `fields` map, or None (a namespace that is absent). A value of the wrong kind reads as
missing, never as an error: metadata comes from Envoy filters and Lua scripts this process does not control.
Integers may arrive as numbers (what the ext_proc itself writes) or as digit strings (what Lua writes).
"""

from __future__ import annotations

from typing import Any


def _value(container: Any, key: str) -> Any:
    if container is None:
        return None
    fields = getattr(container, "fields", container)
    if key not in fields:  # never index a missing key: a protobuf message map would insert it
        return None
    return fields[key]


def string_field(container: Any, key: str) -> str | None:
    value = _value(container, key)
    if value is None or value.WhichOneof("kind") != "string_value":
        return None
    return str(value.string_value)


def int_field(container: Any, key: str) -> int | None:
    value = _value(container, key)
    if value is None:
        return None
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return int(value.number_value)
    if kind == "string_value" and value.string_value.isdigit():
        return int(value.string_value)
    return None
