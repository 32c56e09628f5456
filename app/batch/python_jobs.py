"""A Python job's command: its calls pickled (cloudpickle) inline, and a small runner.

The command is `python3 -c RUNNER VERSION PAYLOAD TOKEN=PATH ...`: the runner checks that its
Python is the version that pickled the payload (pickled functions do not travel between
versions), unpickles the calls, runs them in order (a resource argument arrives as its local
path, a group as {member: path}, a PythonResult as its value) and writes each result's pickle
and its `as_str` / `as_json` / `as_repr` files. The interpreter is the one that ran the script
when it exists on the worker (a local pool), else `python3` (a cloud worker or an image), which
needs the same Python version and cloudpickle, as Hail's Python jobs need dill in their image.
"""

from __future__ import annotations

import base64
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any

from app.batch.compile import PRIVATE_DIR, quote_path
from app.batch.jobs import PythonJob
from app.batch.resources import NotSupportedError, PythonResult, Resource, ResourceGroup

if TYPE_CHECKING:
    from app.batch.compile import DagFiles

# `bash -c` takes the whole command as one argument, which Linux caps at 128 KiB
MAX_PAYLOAD_CHARS = 96 * 1024

RUNNER = r"""
import sys
made = sys.argv[1]
here = "%d.%d" % sys.version_info[:2]
if here != made:
    sys.exit("labbatch: this Python job was pickled by Python %s, but the worker runs it with "
             "Python %s (%s); give the job an image with Python %s and cloudpickle, or run it "
             "where python3 is Python %s" % (made, here, sys.executable, made, made))
try:
    import cloudpickle
except ImportError:
    sys.exit("labbatch: this Python job needs cloudpickle, which %s does not have: "
             "pip install cloudpickle there, or give the job an image that has it"
             % sys.executable)
import base64, json
paths = dict(arg.split("=", 1) for arg in sys.argv[3:])
calls = cloudpickle.loads(base64.b64decode(sys.argv[2]))
values = {}
def value(token):
    if token not in values:
        with open(paths[token], "rb") as f:
            values[token] = cloudpickle.load(f)
    return values[token]
def arg(a):
    kind, v = a
    if kind == "value":
        return v
    if kind == "result":
        return value(v)
    if kind == "path":
        return paths[v]
    if kind == "group":
        return {m: paths[t] for m, t in v.items()}
    if kind == "list":
        return [arg(x) for x in v]
    if kind == "tuple":
        return tuple(arg(x) for x in v)
    return {k: arg(x) for k, x in v.items()}
for call in calls:
    result = call["function"](*[arg(a) for a in call["args"]],
                              **{k: arg(a) for k, a in call["kwargs"].items()})
    values[call["result"]] = result
    with open(paths[call["result"]], "wb") as f:
        cloudpickle.dump(result, f)
    for kind, show in (("str", str), ("json", json.dumps), ("repr", repr)):
        if kind in call["text"]:
            with open(paths[call["text"][kind]], "w") as f:
                f.write(show(result) + "\n")
""".strip()


def python_command(job: PythonJob, files: DagFiles) -> str:
    """The bash command that runs the job's calls."""
    try:
        import cloudpickle  # only scripts with Python jobs need it
    except ImportError as exc:  # pragma: no cover - a dependency of LabBatch
        raise NotSupportedError(
            "Python jobs need cloudpickle in the Python that runs the script: pip install "
            "cloudpickle"
        ) from exc
    paths: dict[str, str] = {}
    calls = [_call(job, files, paths, *call) for call in job._calls]
    _pickle_script_modules_by_value(cloudpickle)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        payload = base64.b64encode(cloudpickle.dumps(calls)).decode("ascii")
    except Exception as exc:  # pickling runs user code (__reduce__): any error can come out
        raise NotSupportedError(
            f"{job._label()}: its function or arguments cannot be pickled: {exc}"
        ) from exc
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise NotSupportedError(
            f"{job._label()}: its functions and arguments pickle to {len(payload) // 1024} KiB, "
            f"more than the {MAX_PAYLOAD_CHARS // 1024} KiB a job's command carries; pass large "
            "data as a file (b.read_input) instead of as an argument"
        )
    words = [f"{token}={quote_path(path)}" for token, path in paths.items()]
    python = shlex.quote(sys.executable)
    text = (
        f'py={python}; [ -x "$py" ] || py=python3\n'
        f'"$py" -c {shlex.quote(RUNNER)} {version} {payload} ' + " ".join(words)
    )
    if files.has_private_files(job):
        text = f'mkdir -p "{PRIVATE_DIR}"\n{text}'
    return text


def _pickle_script_modules_by_value(cloudpickle: Any) -> None:
    """Modules next to the script (`from helpers import clean`) travel with the functions:
    the job's Python could not import them from its working directory."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main:
        return
    here = os.path.dirname(os.path.abspath(main)) + os.sep
    installed = tuple(  # the standard library and installed packages stay by reference
        os.path.abspath(prefix) + os.sep
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}
    )
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or name.split(".")[0] in ("app", "hailtop"):
            continue
        path = os.path.abspath(path)
        if path.startswith(here) and not path.startswith(installed):
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:  # a submodule whose package is not in sys.modules
                continue


def _call(
    job: PythonJob,
    files: DagFiles,
    paths: dict[str, str],
    result: PythonResult,
    function: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    def resource_path(resource: Resource) -> str:
        paths[resource._uid] = files.path(job, resource)
        return resource._uid

    def prepare(value: Any) -> Any:
        if isinstance(value, PythonResult):
            return ("result", resource_path(value))
        if isinstance(value, ResourceGroup):
            members = {m: resource_path(f) for m, f in value._resources.items()}
            return ("group", members)
        if isinstance(value, Resource):
            return ("path", resource_path(value))
        if isinstance(value, list):
            return ("list", [prepare(item) for item in value])
        if isinstance(value, tuple):
            return ("tuple", tuple(prepare(item) for item in value))
        if isinstance(value, dict):
            return ("dict", {key: prepare(item) for key, item in value.items()})
        return ("value", value)

    return {
        "function": function,
        "args": [prepare(arg) for arg in args],
        "kwargs": {key: prepare(arg) for key, arg in kwargs.items()},
        "result": resource_path(result),
        "text": {kind: resource_path(file) for kind, file in result._converted.items()},
    }
