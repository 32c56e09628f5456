"""How a DAG file's text fails to load, shared by the JSON and YAML loaders (dag_text, dag_yaml)."""

from __future__ import annotations

from app.models.limits import MAX_NESTING, OverLimit


class TextSyntaxError(ValueError):
    """Text that is not valid YAML or JSON; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def over_limit(text: str, exc: BaseException) -> TextSyntaxError:
    """Say which limit the text breaks, and where (JSON is YAML too)."""
    from app.models.yaml_limits import yaml_limit_problem

    problem = yaml_limit_problem(text)
    if problem is not None:
        return TextSyntaxError(problem.message, problem.line)
    if isinstance(exc, RecursionError):
        return TextSyntaxError(f"nested more than {MAX_NESTING} levels deep")
    if isinstance(exc, OverLimit):
        return TextSyntaxError("a key is given twice, or a number is too long or too large")
    return TextSyntaxError(f"invalid text: {exc}")
