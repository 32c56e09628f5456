"""Files in a DAG document: batch inputs, job inputs and outputs, batch outputs, and the
dependencies they make. Qt-free; the values stay as the file writes them (`DagDocument`
keeps them in the job fields `inputs`/`outputs` and the batch fields of the same names), and
the functions here compute new values for undo commands to set.
"""

from __future__ import annotations

import copy
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.models.dag_parts import Edge, NodeId
from app.models.files import MAX_NAME_CHARS, check_name

if TYPE_CHECKING:
    from app.models.dag_document import DagDocument


@dataclass(frozen=True, slots=True)
class FileLink:
    """One job input and what it reads: a batch input (`source` None) or a job's output."""

    source: NodeId | None
    output: str  # the output's (or batch input's) name
    target: NodeId
    input: str  # the local name in the target job


def job_inputs(fields: Mapping[str, Any]) -> dict[str, str]:
    """A job's inputs as local name -> reference, leniently (bad entries are left out)."""
    value = fields.get("inputs")
    if isinstance(value, list):
        return {ref.rsplit(".", 1)[-1]: ref for ref in value if isinstance(ref, str) and ref}
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return {}


def job_outputs(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A job's outputs as name -> shape as written (None, `.ext`, or a group), leniently."""
    value = fields.get("outputs")
    if isinstance(value, list):
        return {name: None for name in value if isinstance(name, str)}
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if isinstance(k, str)}
    return {}


def batch_inputs(document: DagDocument) -> dict[str, Any]:
    """The batch inputs, name -> location (or group), as written."""
    value = document.batch.get("inputs")
    return dict(value) if isinstance(value, dict) else {}


def batch_outputs(document: DagDocument) -> list[dict[str, Any]]:
    """The batch outputs, `{from, to}` mappings as written."""
    value = document.batch.get("outputs")
    return (
        [dict(item) for item in value if isinstance(item, dict)] if isinstance(value, list) else []
    )


def reference(document: DagDocument, source: NodeId | None, output: str) -> str:
    """The reference text for a job's output (or a batch input when `source` is None)."""
    return output if source is None else f"{document.name(source)}.{output}"


def resolve(document: DagDocument, ref: str) -> tuple[NodeId | None, str] | None:
    """What a reference names: (None, input) for a batch input, (job, output); else None."""
    if ref in batch_inputs(document):
        return (None, ref)
    cut = len(ref)
    while (cut := ref.rfind(".", 0, cut)) > 0:
        node_id = document.node_named(ref[:cut])
        if node_id is not None:
            name = ref[cut + 1 :]
            return (node_id, name) if name in job_outputs(document.fields(node_id)) else None
    return None


def file_links(document: DagDocument) -> list[FileLink]:
    """Every job input that names a known batch input or job output, in file order."""
    links = []
    for node_id in document.node_ids:
        for local, ref in job_inputs(document.fields(node_id)).items():
            found = resolve(document, ref)
            if found is not None:
                links.append(FileLink(found[0], found[1], node_id, local))
    return links


def file_edges(document: DagDocument) -> list[Edge]:
    """The dependencies the files make (producer, consumer), without duplicates."""
    edges = ((link.source, link.target) for link in file_links(document) if link.source is not None)
    return list(dict.fromkeys((p, c) for p, c in edges if p is not None))


def file_edges_by_index(jobs: list[dict[str, Any]]) -> list[Edge]:
    """The dependencies files make among jobs given as file data, by index (for layout)."""
    index = {job.get("name"): k for k, job in enumerate(jobs) if isinstance(job.get("name"), str)}
    edges: dict[Edge, None] = {}
    for child, job in enumerate(jobs):
        for ref in job_inputs(job).values():
            cut = len(ref)
            while (cut := ref.rfind(".", 0, cut)) > 0:
                parent = index.get(ref[:cut])
                if parent is not None:
                    if parent != child:
                        edges[(parent, child)] = None
                    break
    return list(edges)


def _reaches(document: DagDocument, start: NodeId, goal: NodeId) -> bool:
    children: dict[NodeId, set[NodeId]] = {n: set(document.children(n)) for n in document.node_ids}
    for parent, child in file_edges(document):
        children[parent].add(child)
    seen, queue = {start}, deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            return True
        for child in children[node] - seen:
            seen.add(child)
            queue.append(child)
    return False


def reaches_through_files(document: DagDocument, start: NodeId, goal: NodeId) -> bool:
    """Whether `goal` runs after `start` once files count as dependencies (False, and cheap,
    when no job reads another's output)."""
    return bool(file_edges(document)) and _reaches(document, start, goal)


def check_connect(
    document: DagDocument, source: NodeId | None, output: str, target: NodeId
) -> str | None:
    """Why `source`'s output cannot become an input of `target`, or None when it can."""
    ref = reference(document, source, output)
    if ref in job_inputs(document.fields(target)).values():
        return f"{document.name(target)} already reads {ref}"
    if source is None:
        return None
    if source == target:
        return "a job cannot read its own output"
    if _reaches(document, target, source):
        source_name, target_name = document.name(source), document.name(target)
        return f"that would make a cycle: {source_name} already runs after {target_name}"
    return None


def free_name(taken: Iterable[str], base: str) -> str:
    """`base`, or `base_2`, `base_3` … whichever is not taken."""
    used = set(taken)
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}_{k}"
    return name


def name_for_location(location: str) -> str:
    """An input name made from a file's name: `data/Sample A.fa.gz` -> `Sample_A`."""
    stem = location.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_")[:MAX_NAME_CHARS] or "input"
    if name[0].isdigit():
        name = f"f_{name}"[:MAX_NAME_CHARS]
    try:
        check_name(name)
    except ValueError:
        name = f"in_{name}"[:MAX_NAME_CHARS]
    return name


def with_input(fields: Mapping[str, Any], ref: str, name: str | None = None) -> object:
    """The job's `inputs` value with one more input reading `ref` (named after what it reads,
    unless `name` is given; a list stays a list while every name follows its reference)."""
    current = fields.get("inputs")
    taken = set(job_inputs(fields)) | set(job_outputs(fields))
    local = name or free_name(taken, ref.rsplit(".", 1)[-1])
    if isinstance(current, list) and local == ref.rsplit(".", 1)[-1]:
        return [*current, ref]
    mapping = dict(job_inputs(fields)) if isinstance(current, list) else dict(current or {})
    mapping[local] = ref
    return mapping


def without_input(fields: Mapping[str, Any], name: str) -> object:
    """The job's `inputs` value without one input (None when none is left)."""
    current = fields.get("inputs")
    if isinstance(current, list):
        kept: object = [ref for ref in current if ref.rsplit(".", 1)[-1] != name]
    else:
        kept = {k: v for k, v in (current or {}).items() if k != name}
    return kept or None


def check_file_name(fields: Mapping[str, Any], name: str, old: str | None = None) -> str | None:
    """Why `name` cannot name a new (or renamed `old`) input or output of a job, or None."""
    try:
        check_name(name)
    except ValueError as exc:
        return str(exc)
    env = fields.get("env")
    if isinstance(env, dict) and name in env:
        return f"{name!r} would shadow the job's env variable {name}: rename it"
    taken = (set(job_inputs(fields)) | set(job_outputs(fields))) - {old}
    if name in taken:
        return f"the job already has an input or output named {name!r}"
    return None


FieldChange = tuple[NodeId, str, object]  # (job, field, new value)


def renamed_output(
    document: DagDocument, node_id: NodeId, old: str, new: str
) -> tuple[list[FieldChange], object]:
    """A rename of a job's output: the field changes (the job's `outputs`, the `inputs` of
    every job reading it, which keep their local names) and the new batch `outputs`."""
    current = document.fields(node_id).get("outputs")
    if isinstance(current, list):
        outputs: object = [new if name == old else name for name in current]
    else:
        outputs = {(new if k == old else k): copy.deepcopy(v) for k, v in (current or {}).items()}
    changes: list[FieldChange] = [(node_id, "outputs", outputs)]
    old_ref, new_ref = reference(document, node_id, old), reference(document, node_id, new)
    for other in document.node_ids:
        inputs = job_inputs(document.fields(other))
        if old_ref in inputs.values():
            renamed = {k: (new_ref if v == old_ref else v) for k, v in inputs.items()}
            changes.append((other, "inputs", renamed))
    targets = [
        {**item, "from": new_ref} if item.get("from") == old_ref else item
        for item in batch_outputs(document)
    ]
    return changes, targets or None


def _renamed_ref(ref: object, old: str, new: str, outputs: Mapping[str, Any]) -> object:
    if isinstance(ref, str) and ref.startswith(old + ".") and ref[len(old) + 1 :] in outputs:
        return new + ref[len(old) :]
    return ref


def references_renamed(
    document: DagDocument, node_id: NodeId, old: str, new: str
) -> tuple[list[FieldChange], object]:
    """When job `node_id` is renamed from `old` to `new`: the new `inputs` of the jobs that
    read its outputs (in the form they are written) and the new batch `outputs`."""
    outputs = job_outputs(document.fields(node_id))
    changes: list[FieldChange] = []
    for other in document.node_ids:
        value = document.fields(other).get("inputs")
        renamed: object = value
        if isinstance(value, list):
            renamed = [_renamed_ref(ref, old, new, outputs) for ref in value]
        elif isinstance(value, dict):
            renamed = {k: _renamed_ref(ref, old, new, outputs) for k, ref in value.items()}
        if renamed != value:
            changes.append((other, "inputs", renamed))
    targets = [
        {**item, "from": _renamed_ref(item.get("from"), old, new, outputs)}
        for item in batch_outputs(document)
    ]
    return changes, targets or None
