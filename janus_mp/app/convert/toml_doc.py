"""A janus.toml being written: tables of keys with a comment line wherever a source option has no
equivalent or means something else. Rendering checks itself: the text parses back (tomllib) to
exactly the values set, so a converter can never print a file `check` cannot read."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from janus_mp.errors import ConfigError


@dataclass
class Table:
    """One ``[header]`` table: keys in the order set, each with the comment lines before it."""

    header: str
    values: dict[str, Any] = field(default_factory=dict)
    #: Comment lines: (the key they precede, or None for the table's end, text).
    comments: list[tuple[str | None, str]] = field(default_factory=list)

    def set(self, key: str, value: Any, comment: str = "") -> None:
        self.values[key] = value
        if comment:
            self.comments.append((key, comment))

    def note(self, text: str) -> None:
        """A comment for a source option that became no key."""
        self.comments.append((None, text))


@dataclass
class Document:
    heading: list[str] = field(default_factory=list)
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, header: str) -> Table:
        return self.tables.setdefault(header, Table(header))

    def render(self) -> str:
        lines = [f"# {line}" for line in self.heading]
        expected: dict[str, Any] = {}
        for table in self.tables.values():
            if not table.values and not table.comments:
                continue
            lines.append("")
            lines.append(f"[{table.header}]")
            for key, value in table.values.items():
                lines.extend(_comment(text) for before, text in table.comments if before == key)
                lines.append(f"{_key(key)} = {_value(key, value)}")
            lines.extend(_comment(text) for before, text in table.comments if before is None)
            _place(expected, table.header, table.values)
        text = "\n".join(lines).lstrip("\n") + "\n"
        if tomllib.loads(text) != expected:  # pragma: no cover - a renderer bug, not input
            raise AssertionError("the written TOML does not read back as written")
        return text


def _comment(text: str) -> str:
    # one physical line per comment: a newline in a source value must not end the comment
    return "# " + " ".join(text.split())


def _key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key)


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(key, f"{value!r} is not a number TOML can hold")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(key, v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(key, v) for v in value) + "]"
    raise ConfigError(key, f"{value!r} cannot be written as TOML")


def header(*parts: str) -> str:
    """A table header from its key parts, each quoted when it needs to be."""
    return ".".join(_key(part) for part in parts)


def _place(root: dict[str, Any], header: str, values: Mapping[str, Any]) -> None:
    node = root
    parsed = tomllib.loads(f"[{header}]\n")
    while parsed:
        ((name, parsed),) = parsed.items()
        node = node.setdefault(name, {})
    node.update({k: _plain(v) for k, v in values.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
