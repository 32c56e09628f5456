"""The text of a DAG file as plain data: JSON here, YAML in `dag_yaml`, loaded only for YAML.

PyYAML takes about 25 ms to import, a tenth of what `labbatch run dag.json` needs before its
batch is stored: a valid JSON file is read without it. Nothing here knows the DAG format;
`app.models.spec` turns a `TextSyntaxError` into a problem.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from app.models.limits import DataPath, OverLimit, json_int, json_object, too_deep
from app.models.text_errors import TextSyntaxError, over_limit

__all__ = ["DataPath", "TextSyntaxError", "load_json", "load_text", "text_lines"]


def load_text(text: str, fmt: str) -> object:
    """Load the text of a DAG file ("json" or "yaml"); raise TextSyntaxError."""
    if fmt == "json":
        return load_json(text)
    from app.models.dag_yaml import load_yaml

    return load_yaml(text)


def load_json(text: str) -> object:
    """Load JSON text; raise TextSyntaxError (also for text over the limits)."""
    try:
        data = json.loads(text, object_pairs_hook=json_object, parse_int=json_int)
        if too_deep(data):
            raise OverLimit
        return data
    except json.JSONDecodeError as exc:
        raise TextSyntaxError(f"invalid JSON: {exc.msg}", exc.lineno) from exc
    except (OverLimit, RecursionError, ValueError) as exc:
        raise over_limit(text, exc) from None


def text_lines(text: str, wanted: Collection[DataPath]) -> dict[DataPath, int]:
    """The 1-based line of each wanted data path, in YAML or JSON text (see `yaml_lines`)."""
    from app.models.dag_yaml import yaml_lines

    return yaml_lines(text, wanted)
