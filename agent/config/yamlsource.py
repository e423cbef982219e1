"""YAML reading that remembers where every value came from.

Config, profile and plant files are all read through ``Section`` so that a
mistake is reported as ``FILE:LINE: dotted.field.path: message`` and every
mistake in a file is collected before anything fails.

A YAML file is refused, located, before it can cost a gateway its memory: larger
than ``MAX_FILE_BYTES``, nested deeper than ``MAX_DEPTH``, or with more than
``MAX_VALUES`` values once every alias is expanded (an "alias bomb": nine
aliases to nine aliases ... to a list is a billion strings in a few hundred bytes).
A real site config is a few kilobytes, a few levels deep and a few thousand values.

Long because the bounded loader and the located sections it builds are one contract: every
value a ``Section`` hands out carries the line the loader recorded.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Collection, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agent.errors import ConfigError, ConfigIssue

E = TypeVar("E", bound=Enum)
_MISSING: Any = object()

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64  # nested mappings and lists; far below Python's recursion limit
MAX_VALUES = 200_000  # scalars, mappings and lists, every alias counted as what it expands to
_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict, _SHOWN.maxlevel = 80, 80, 8, 8, 3

# Modbus unit ids a poll may address: 0 is broadcast (no drive answers it), 248..255 are reserved.
UNIT_ID_MIN, UNIT_ID_MAX = 1, 247
BROADCAST_HINT = "unit 0 is the broadcast address, which no drive answers; use 1..247"


class LocatedDict(dict[Any, Any]):
    """A mapping that knows the line of itself and of each of its keys."""

    line: int = 0
    key_lines: dict[Any, int]


class LocatedList(list[Any]):
    """A sequence that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list[int]


def shown(value: Any) -> str:
    """A value for a message: its repr, shortened (a wrong value may be a huge tree)."""
    return _SHOWN.repr(value)


class _LimitError(yaml.composer.ComposerError):
    """A file over one of the limits, with the dotted path of the field where it went over."""

    def __init__(self, field: str, problem: str, mark: yaml.Mark) -> None:
        super().__init__(None, None, problem, mark)
        self.field = field


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records 1-based line numbers on mappings and sequences, within the limits.

    Composition is where aliases and nesting are resolved, so the limits are kept
    there: ``_sizes`` holds each finished node's expanded size, ``_open`` the
    running size of each node being composed (its length is the depth), ``_path``
    the field being composed, for the message.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._open: list[int] = []
        self._path: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, counting what it expands to; refuse what exceeds a limit."""
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if isinstance(index, yaml.ScalarNode):  # a mapping's value: index is its key
            self._path.append(f".{str(index.value)[:40]}")
        elif isinstance(index, int):
            self._path.append(f"[{index}]")
        else:
            self._path.append("")  # a mapping's key, or the document
        try:
            return self._compose_counted(parent, index, mark)
        finally:
            self._path.pop()

    def _compose_counted(self, parent: yaml.Node | None, index: Any, mark: yaml.Mark) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            node = self._compose(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                self._refuse("an alias inside the anchor it names (a structure containing itself)", mark)
            self._count(size or 0, mark)
            return node
        if len(self._open) >= MAX_DEPTH:
            self._refuse(f"nested deeper than {MAX_DEPTH} levels (the limit for a config file)", mark)
        self._open.append(1)
        try:
            node = self._compose(parent, index)
        finally:
            size = self._open.pop()
        self._sizes[id(node)] = size
        self._count(size, mark)
        return node

    def _compose(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        node = super().compose_node(parent, index)
        if node is None:  # pragma: no cover - PyYAML returns a node or raises
            raise yaml.composer.ComposerError(None, None, "expected a node", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        return node

    def _count(self, size: int, mark: yaml.Mark) -> None:
        total = size
        if self._open:
            self._open[-1] += size
            total = self._open[-1]
        if total > MAX_VALUES:
            self._refuse(f"more than {MAX_VALUES} values once aliases are expanded (an alias bomb?); "
                         "the limit for a config file", mark)

    def _refuse(self, problem: str, mark: yaml.Mark) -> None:
        parts = [p for p in self._path if p]
        if len(parts) > 8:  # a deep path: where it starts and where it went over
            parts = [*parts[:4], "...", *parts[-2:]]
        field = "".join(parts).strip(".") or "(top level)"
        raise _LimitError(field, problem, mark)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LocatedDict:
    result = LocatedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown(key)}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class Issues:
    """Collects the problems found in one or more files."""

    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []

    def add(self, file: str, line: int, field: str, message: str) -> None:
        self.items.append(ConfigIssue(file, line, field, message))

    def raise_if_any(self) -> None:
        """Fail with every collected problem at once."""
        if self.items:
            raise ConfigError(self.items)


def load_yaml(path: Path, issues: Issues) -> Section | None:
    """Read a YAML file whose top level is a mapping; None (and an issue) if it cannot be."""
    file = str(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)  # never more: the path may be a device or a huge file
    except OSError as exc:
        issues.add(file, 0, "(file)", f"cannot read: {exc.strerror or exc}")
        return None
    if len(data) > MAX_FILE_BYTES:
        line = data[:MAX_FILE_BYTES].count(b"\n") + 1
        limit = f"is larger than {MAX_FILE_BYTES // 1024} KiB (the limit for a config file)"
        issues.add(file, line, "(file)", f"{limit}; it goes past the limit at this line")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        issues.add(file, 0, "(file)", "is not UTF-8 text")
        return None
    return parse_yaml(text, file, issues)


def parse_yaml(text: str, file: str, issues: Issues) -> Section | None:
    """Parse YAML text; syntax errors become located issues."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        field = exc.field if isinstance(exc, _LimitError) else "(syntax)"
        issues.add(file, line, field, f"{exc.problem or exc.context or 'invalid YAML'}")
        return None
    except yaml.YAMLError as exc:
        issues.add(file, 0, "(syntax)", str(exc))
        return None
    if not isinstance(data, LocatedDict):
        issues.add(file, 1, "(top level)", "must be a mapping of fields")
        return None
    return Section(data, "", file, issues)


class Section:
    """A mapping in a YAML file, with typed getters that record located issues.

    Getters never raise for a user's mistake: they record an issue and return
    a placeholder so that the rest of the file is still checked.
    """

    def __init__(self, data: LocatedDict, path: str, file: str, issues: Issues) -> None:
        self.data = data
        self.path = path
        self.file = file
        self.issues = issues

    def field(self, key: str) -> str:
        """Dotted path of a field of this section."""
        return f"{self.path}.{key}" if self.path else key

    def line(self, key: str | None = None) -> int:
        """Line of a key, or of the section itself."""
        if key is not None and key in self.data.key_lines:
            return self.data.key_lines[key]
        return self.data.line

    def error(self, key: str | None, message: str) -> None:
        """Record an issue at a key of this section (or at the section)."""
        self.issues.add(self.file, self.line(key), self.field(key) if key else self.path, message)

    def has(self, key: str) -> bool:
        """True if the key is present (even if null)."""
        return key in self.data

    def check_keys(self, allowed: set[str]) -> None:
        """Report keys this section does not know, which are usually typos."""
        for key in self.data:
            if key not in allowed:
                # An empty key still needs a name in the message (found by tests/agent/test_bad_input.py).
                expected = ", ".join(sorted(allowed))
                self.error(str(key) or repr(key), f"unknown field; expected one of: {expected}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The value as YAML gave it; a missing required key is reported."""
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                self.issues.add(self.file, self.line(), self.field(key), "is required")
            return None if default is _MISSING else default
        return self.data[key]

    def string(self, key: str, default: Any = _MISSING) -> str:
        """A non-empty string."""
        value = self.raw(key, default)
        if value is None:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.error(key, f"must be a non-empty string, got {shown(value)}")
            return ""
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float:
        """A finite number within bounds; NaN is returned on a recorded issue."""
        value = self.raw(key, default)
        if value is None:
            return math.nan
        return self.check_number(key, value, minimum, maximum, exclusive_minimum)

    def check_number(
        self,
        key: str,
        value: Any,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> float:
        """Validate a number taken from this section (or one of its lists)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(key, f"must be a number, got {shown(value)}")
            return math.nan
        number = float(value)
        if not math.isfinite(number):
            self.error(key, f"must be finite, got {shown(value)}")
            return math.nan
        if minimum is not None and (
            number < minimum or (exclusive_minimum and number == minimum)
        ):
            relation = ">" if exclusive_minimum else ">="
            self.error(key, f"must be {relation} {minimum:g}, got {shown(value)}")
            return math.nan
        if maximum is not None and number > maximum:
            self.error(key, f"must be <= {maximum:g}, got {shown(value)}")
            return math.nan
        return number

    def integer(
        self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        """An integer within bounds; -1 is returned on a recorded issue."""
        value = self.raw(key, default)
        if value is None:
            return -1
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be a whole number, got {shown(value)}")
            return -1
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.error(key, f"must be in [{minimum}, {maximum}], got {value}")
            return -1
        return value

    def unit_id(self, key: str) -> int:
        """A Modbus unit id to poll (1..247); -1 is returned on a recorded issue."""
        value = self.raw(key, -1)
        if type(value) is int and value == 0:
            self.error(key, BROADCAST_HINT)
            return -1
        return self.integer(key, minimum=UNIT_ID_MIN, maximum=UNIT_ID_MAX)

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        """A true/false value."""
        value = self.raw(key, default)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, got {shown(value)}")
            return False
        return value

    def choice(self, key: str, enum: type[E], default: Any = _MISSING) -> E | None:
        """One of an enum's values, given by its string value."""
        value = self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, enum):
            return value
        for member in enum:
            if member.value == value:
                return member
        allowed = ", ".join(str(m.value) for m in enum)
        self.error(key, f"must be one of: {allowed}; got {shown(value)}")
        return None

    def section(self, key: str, required: bool = True) -> Section | None:
        """A nested mapping."""
        value = self.raw(key, _MISSING if required else None)
        if value is None:
            return None
        if not isinstance(value, LocatedDict):
            self.error(key, "must be a mapping of fields")
            return None
        return Section(value, self.field(key), self.file, self.issues)

    def sections(self, key: str, required: bool = True) -> Iterator[Section]:
        """Each mapping of a list of mappings."""
        value = self.raw(key, _MISSING if required else None)
        if value is None:
            return
        if not isinstance(value, LocatedList):
            self.error(key, "must be a list")
            return
        for index, item in enumerate(value):
            if isinstance(item, LocatedDict):
                yield Section(item, f"{self.field(key)}[{index}]", self.file, self.issues)
            else:
                self.issues.add(
                    self.file, value.item_lines[index], f"{self.field(key)}[{index}]",
                    "must be a mapping of fields",
                )

    def named_sections(self, key: str, required: bool = True) -> Iterator[tuple[str, Section]]:
        """Each entry of a mapping of name -> mapping."""
        child = self.section(key, required)
        if child is None:
            return
        for name, value in child.data.items():
            if isinstance(value, LocatedDict):
                yield str(name), Section(value, child.field(str(name)), self.file, self.issues)
            else:
                child.error(str(name), "must be a mapping of fields")

    def number_pairs(self, key: str, default: Any = _MISSING) -> list[tuple[float, float]]:
        """A list of [x, y] number pairs, e.g. a 5-point characteristic."""
        value = self.raw(key, default)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            self.error(key, "must be a list of [x, y] pairs")
            return []
        pairs: list[tuple[float, float]] = []
        for item in value:
            if (
                not isinstance(item, list | tuple)
                or len(item) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) for v in item)
            ):
                self.error(key, f"each entry must be a pair of numbers [x, y], got {shown(item)}")
                return []
            pairs.append((float(item[0]), float(item[1])))
        return pairs

    def names(self, key: str, known: Collection[str], owner: str) -> list[str]:
        """A non-empty list of names at ``key``, each one of ``known``, none twice; else located errors."""
        raw = self.raw(key, None)
        if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
            self.error(key, f"must list the names of the {owner}'s {key}")
            return []
        names = [str(n) for n in raw]
        item = key.rstrip("s")  # "drives" -> "drive"
        for name in names:
            self.validate(key, name in known, f"no {item} {name!r}; {key}: {', '.join(known) or 'none'}")
        self.validate(key, len(set(names)) == len(names), f"a {item} is listed twice")
        return names

    def validate(self, key: str, ok: bool, message: str) -> bool:
        """Record a cross-field problem at a key when ``ok`` is false."""
        if not ok:
            self.error(key, message)
        return ok



