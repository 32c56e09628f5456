"""YAML text as plain data, and the line of a data path in YAML (or JSON) text.

Imported only for a YAML file, or to locate problems (`dag_text` loads JSON without PyYAML).
YAML is built from PyYAML's parser events, because its composer and constructor make loading
five times slower; the full safe loader is used only for the features left to it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
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
    MAX_STRING_CHARS,
    DataPath,
    OverLimit,
    too_long_number,
    whole_number_problem,
)
from app.models.text_errors import TextSyntaxError, over_limit
from app.models.yaml_limits import yaml_limit_problem

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> object:
    """Load YAML text as yaml.safe_load does; raise TextSyntaxError (also for text over the
    limits: nesting, numbers, string lengths, duplicate keys, aliases)."""
    try:
        try:
            return _load_plain_yaml(text)
        except _NotPlainYaml:
            problem = yaml_limit_problem(text)  # the full loader checks none of them
            if problem is not None:
                raise TextSyntaxError(problem.message, problem.line) from None
            return yaml.load(text, Loader=_YAML_LOADER)  # a safe loader
    except TextSyntaxError:
        raise
    except (OverLimit, RecursionError) as exc:
        raise over_limit(text, exc) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = ": ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark else None
        raise TextSyntaxError(f"invalid YAML: {what}", line) from exc
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2024-13-45
        raise TextSyntaxError(f"invalid YAML: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# YAML from parser events


class _NotPlainYaml(Exception):
    """The text uses YAML features left to PyYAML's full loader: tags, anchors, merge keys."""


_RESOLVERS_BY_FIRST_CHAR = Resolver.yaml_implicit_resolvers
_CONSTRUCTOR = SafeConstructor()
_NULL_TAG = "tag:yaml.org,2002:null"
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float"))
_PLAIN_TAGS = (None, "!")
_NO_KEY = object()


def _load_plain_yaml(text: str) -> object:
    """Load YAML as yaml.safe_load does; raise _NotPlainYaml for what it leaves to PyYAML."""
    root: object = None
    containers: list[Any] = []  # the open mappings and sequences, innermost last
    keys: list[object] = []  # per open container: the key waiting for its value, or _NO_KEY
    n_documents = 0
    # One flat loop: this runs once per event, a million times for a 100,000-job file.
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        kind = type(event)
        if kind is ScalarEvent:
            if event.anchor is not None or event.tag not in _PLAIN_TAGS:
                raise _NotPlainYaml
            if len(event.value) > MAX_STRING_CHARS:
                raise OverLimit
            value = _plain_scalar(event.value) if event.implicit[0] else event.value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.tag not in _PLAIN_TAGS:
                raise _NotPlainYaml
            if len(containers) >= MAX_NESTING:
                raise OverLimit
            value = {} if kind is MappingStartEvent else []
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            containers.pop()
            keys.pop()
            continue
        elif kind is AliasEvent or (kind is DocumentStartEvent and n_documents):
            raise _NotPlainYaml  # the full loader resolves aliases and refuses a second document
        else:
            n_documents += kind is DocumentStartEvent
            continue
        if not containers:
            root = value
        elif type(containers[-1]) is list:
            containers[-1].append(value)
        elif keys[-1] is _NO_KEY:
            if type(value) is dict or type(value) is list:
                raise _NotPlainYaml  # a mapping or a list as a key
            keys[-1] = value
        else:
            if keys[-1] in containers[-1]:
                raise OverLimit  # a duplicate key
            containers[-1][keys[-1]] = value
            keys[-1] = _NO_KEY
        if kind is not ScalarEvent:
            containers.append(value)
            keys.append(_NO_KEY)
    return root


def _plain_scalar(value: str) -> object:
    """Resolve an untagged plain scalar as PyYAML's SafeLoader does."""
    for tag, regexp in _RESOLVERS_BY_FIRST_CHAR.get(value[:1], ()):
        if regexp.match(value):
            if tag == _NULL_TAG:
                return None
            if tag not in _SCALAR_TAGS:
                raise _NotPlainYaml  # timestamps, merge keys
            if too_long_number(value):
                raise OverLimit
            result = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, value))
            if type(result) is int and whole_number_problem(result):
                raise OverLimit
            return result
    return value


# ---------------------------------------------------------------------------------------------
# Lines of data paths, read again from the text only when there are problems to locate


@dataclass(slots=True)
class _OpenNode:
    """A mapping or sequence being read, and the step to its current entry."""

    is_mapping: bool
    step: str | int = 0  # the index of the next item, or the key just read
    wants_key: bool = True


_NODE_EVENTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent, AliasEvent)


def yaml_lines(text: str, wanted: Collection[DataPath]) -> dict[DataPath, int]:
    """Find the 1-based line of each wanted data path (of its key, for a mapping entry).

    Keys are matched as written, so JSON text works too; a key YAML reads as another value
    (an unquoted `on` is true) is found under its text.
    """
    lines: dict[DataPath, int] = {}
    path: list[str | int] = []  # steps from the root to the innermost open node
    open_nodes: list[_OpenNode] = []
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, MappingEndEvent | SequenceEndEvent):
                open_nodes.pop()
                if open_nodes:
                    path.pop()
                continue
            if not isinstance(event, _NODE_EVENTS):
                continue
            line, step = event.start_mark.line + 1, None
            parent = open_nodes[-1] if open_nodes else None
            if parent is None:
                lines[()] = line
            elif parent.is_mapping and parent.wants_key:
                if not isinstance(event, ScalarEvent):
                    break  # a mapping or a list as a key: the lines found so far will do
                parent.step, parent.wants_key = event.value, False
                if (*path, event.value) in wanted:
                    lines[(*path, event.value)] = line
                continue
            elif parent.is_mapping:
                step, parent.wants_key = parent.step, True  # a value: its key has the line
            else:
                step, parent.step = parent.step, int(parent.step) + 1
                if (*path, step) in wanted:
                    lines[(*path, step)] = line
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                if step is not None:
                    path.append(step)
                open_nodes.append(_OpenNode(isinstance(event, MappingStartEvent)))
    except yaml.YAMLError:
        pass  # JSON that YAML does not read: no lines, which JSON problems may lack
    return lines
