"""Commands that need no shell, run by exec instead of `bash -c` (GNU make's fast path).

A command is simple when it is one line of plain words: letters, digits and ``-_./,:+@%=``,
separated by spaces or tabs. Nothing in it means anything to bash (no quotes, variables,
globs, redirections, pipes, lists, comments, tildes or braces), so bash would only split it at
the blanks and exec the first word found on ``PATH``, and so does the worker. The first word
may not be a bash keyword or builtin (``cd``, ``echo``, ``test`` behave differently, or only
exist, inside bash) except ``true`` and ``false`` alone, nor an assignment (``A=1 cmd``).

What the job sees is what ``bash -c`` would give it: the same argv, working directory, log,
exit code, and the variables bash adds (``PWD``, ``OLDPWD``, ``SHLVL``, ``_``). Whatever bash
would treat differently goes to bash after all: a first word not found as an executable file
on ``PATH`` (bash prints "command not found", exit 127), a file the kernel cannot exec (bash
runs a script without ``#!`` itself), a ``PATH`` with relative entries, and a job ``env``
that sets variables bash reads at start-up (``BASH_ENV``, exported functions, ...).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_WORD = r"[A-Za-z0-9_\-./,:+@%=]+"
_SIMPLE = re.compile(rf"[ \t]*{_WORD}(?:[ \t]+{_WORD})*[ \t]*")
_BLANKS = re.compile(r"[ \t]+")

# bash 5's builtins and reserved words (a superset of older versions')
_BASH_WORDS = frozenset((
    ".", ":", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "command",
    "compgen", "complete", "compopt", "continue", "coproc", "declare", "dirs", "disown",
    "echo", "enable", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts",
    "hash", "help", "history", "jobs", "kill", "let", "local", "logout", "mapfile",
    "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly", "return", "set",
    "shift", "shopt", "source", "suspend", "test", "times", "trap", "true", "type",
    "typeset", "ulimit", "umask", "unalias", "unset", "wait", "if", "then", "else",
    "elif", "fi", "case", "esac", "for", "select", "while", "until", "do", "done", "in",
    "function", "time", "{", "}", "!", "[[", "]]",
))  # fmt: skip
# builtins whose programs do the same when given no arguments
_SAME_ALONE = frozenset({"true", "false"})
# variables that change what bash does before it runs the command
_BASH_READS = frozenset(
    {"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "EXECIGNORE", "POSIXLY_CORRECT"}
    | {"PWD", "OLDPWD", "SHLVL", "_"}
)
_LOOKUP_TTL_S = 1.0  # a program installed on PATH is seen within this long


def simple_words(command: str) -> list[str] | None:
    """The argv of a command that needs no shell, else None."""
    if not _SIMPLE.fullmatch(command):
        return None
    words = _BLANKS.split(command.strip(" \t"))
    first = words[0]
    if "=" in first:
        return None
    if first in _BASH_WORDS and not (first in _SAME_ALONE and len(words) == 1):
        return None
    return words


@dataclass(frozen=True, slots=True)
class Exec:
    """A simple command as the worker execs it."""

    executable: str
    argv: list[str]
    env: dict[str, str]


class SimpleCommands:
    """Finds programs on PATH (cached briefly) and builds the exec of a simple command."""

    def __init__(self) -> None:
        # bash's OLDPWD after `cd` into the scratch dir: the directory it started in
        self._start_dir = os.getcwd()
        self._found: dict[tuple[str, str], tuple[str | None, float]] = {}

    def prepare(
        self, command: str, job_env: Mapping[str, str], env: dict[str, str], scratch: str
    ) -> Exec | None:
        """The exec of ``command`` in ``scratch`` with ``env``, or None if bash must run it."""
        argv = simple_words(command)
        if argv is None or any(_bash_reads(name) for name in job_env):
            return None
        first = argv[0]
        if "/" in first:
            executable = first  # relative to the scratch dir, which exec runs in
        else:
            found = self._which(first, env.get("PATH", os.defpath))
            if found is None:
                return None
            executable = found
        extra = {"PWD": scratch, "OLDPWD": self._start_dir, "SHLVL": "0", "_": executable}
        return Exec(executable, argv, env | extra)

    def _which(self, name: str, path: str) -> str | None:
        key = (name, path)
        now = time.monotonic()
        cached = self._found.get(key)
        if cached is not None and now - cached[1] < _LOOKUP_TTL_S:
            return cached[0]
        found = _search(name, path)
        if len(self._found) > 1000:
            self._found.clear()
        self._found[key] = (found, now)
        return found


def _bash_reads(name: str) -> bool:
    return name in _BASH_READS or name.startswith("BASH_FUNC_")


def _search(name: str, path: str) -> str | None:
    """The first executable regular file ``name`` on ``path``, as bash finds it; None if there
    is none or ``path`` has a relative entry (bash would look in the scratch dir)."""
    dirs = path.split(":")
    if not all(d.startswith("/") for d in dirs):
        return None
    for directory in dirs:
        candidate = f"{directory.rstrip('/')}/{name}"
        try:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        except OSError:
            continue
    return None
