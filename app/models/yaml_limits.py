"""The scan of YAML (or JSON) text that says which limit it breaks, and on which line.

The loaders' fast paths only notice that a limit is broken (`limits.OverLimit`); this reads the
parser's events again to say what and where. It is apart from `limits` because it needs PyYAML
(about 25 ms to import), which a valid JSON file does without.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from app.models.limits import (
    MAX_NESTING,
    MAX_NUMBER_CHARS,
    MAX_STRING_CHARS,
    MAX_VALUES,
    LimitError,
    short_text,
    too_long_number,
    whole_number_problem,
)

_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_VALUE_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "null"))
_NUMBER_TAGS = frozenset(("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"))
_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar_problem(event: ScalarEvent) -> tuple[str | None, object]:
    """(What is wrong with one scalar, or None; its value as a mapping key)."""
    text = event.value
    if len(text) > MAX_STRING_CHARS:
        return f"a string of {len(text):,} characters; at most {MAX_STRING_CHARS:,}", text
    if not event.implicit[0]:
        return None, text  # quoted: a string
    tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
    if tag in _NUMBER_TAGS and too_long_number(text):
        message = (
            f"the number {short_text(text)} is too long (at most {MAX_NUMBER_CHARS} characters)"
        )
        return message, text
    if tag == _MERGE_TAG:
        return None, _MERGE_TAG
    if tag not in _VALUE_TAGS:
        return None, text
    value = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, text))
    if type(value) is int:
        return whole_number_problem(value), value
    return None, value


@dataclass(slots=True)
class _Open:
    """A mapping or sequence being scanned."""

    seen: dict[object, int] | None  # a mapping's keys and their lines; None for a sequence
    anchor: str | None
    n_values: int = 1  # itself and everything inside, with aliases expanded
    wants_key: bool = True


def yaml_limit_problem(text: str) -> LimitError | None:
    """The first limit the YAML (or JSON) text breaks, with its line; None if it breaks none.

    Reads the parser's events and stops at the first problem; an alias counts as the values it
    stands for, so a few lines that expand to a billion values are refused.
    """
    stack: list[_Open] = []
    anchors: dict[str, int] = {}  # anchor -> how many values it stands for
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            kind = type(event)
            if kind is MappingEndEvent or kind is SequenceEndEvent:
                done = stack.pop()
                if done.anchor is not None:
                    anchors[done.anchor] = done.n_values
                if stack:
                    stack[-1].n_values += done.n_values
                continue
            if kind is not ScalarEvent and kind is not AliasEvent and kind not in _STARTS:
                continue
            problem = _node_problem(event, stack, anchors)
            if problem is not None:
                return problem
            if kind in _STARTS:
                if len(stack) >= MAX_NESTING:
                    line = event.start_mark.line + 1
                    return LimitError(f"nested more than {MAX_NESTING} levels deep", line)
                stack.append(_Open({} if kind is MappingStartEvent else None, event.anchor))
    except yaml.YAMLError:
        return None  # a syntax error: the loader reports it
    return None


def _node_problem(event: Any, stack: list[_Open], anchors: dict[str, int]) -> LimitError | None:
    """Check one scalar, alias or container start against the limits, and count it."""
    line = event.start_mark.line + 1
    key: object = None
    n_values = 1
    if type(event) is ScalarEvent:
        problem, key = _scalar_problem(event)
        if problem:
            return LimitError(problem, line)
        if event.anchor is not None:
            anchors[event.anchor] = 1
    elif type(event) is AliasEvent:
        n_values = anchors.get(event.anchor, 1)
    parent = stack[-1] if stack else None
    if parent is None:
        return None
    parent.n_values += n_values
    if sum(o.n_values for o in stack) > MAX_VALUES:
        return LimitError(f"its aliases expand to more than {MAX_VALUES:,} values", line)
    if parent.seen is not None:
        if parent.wants_key and type(event) is ScalarEvent and key != _MERGE_TAG:
            first = parent.seen.get(_hashable(key))
            if first is not None:
                return LimitError(_duplicate_message(event.value, first, line), line)
            parent.seen[_hashable(key)] = line
        parent.wants_key = not parent.wants_key
    return None


_STARTS = (MappingStartEvent, SequenceStartEvent)


def _hashable(key: object) -> object:
    return key if isinstance(key, str | int | float | bool | type(None)) else repr(key)


def _duplicate_message(key: str, first_line: int, line: int) -> str:
    return (
        f"duplicate key {short_text(key, 40)!r} (lines {first_line} and {line}): "
        "a reader would keep only the last one; remove or rename one of them"
    )
