"""A hailtop.batch-style API: a Python script builds a LabBatch DAG, then imports or runs it.

    import app.batch as hb            # `import hailtop.batch as hb` under `labbatch run/import`
    b = hb.Batch(name="align")
    ref = b.read_input("data/ref.fa")
    index = b.new_job(name="index").cpu(2).memory("4Gi")
    index.command(f"samtools faidx {ref} -o {index.fai}")
    b.write_output(index.fai, "results/ref.fa.fai")
    b.run()

The surface follows hailtop.batch's documentation: resource files (`b.read_input`,
`b.read_input_group`, any `j.<name>`, `j.declare_resource_group`, `add_extension`,
`b.write_output`), `b.select_jobs`, `concatenate`, and Python jobs (`b.new_python_job().call`
with `PythonResult.as_str/as_json/as_repr`); app/batch/compile.py maps it onto the DAG file's
inputs and outputs. `run()` under `labbatch import` (or the canvas's import) writes the DAG for
the importer and runs nothing. Run on its own (`python script.py`, `labbatch run script.py`),
it validates the DAG and runs it as `labbatch run` does, in a child process on the local pool,
printing its report; it raises BatchFailedError when the batch does not succeed. Setters check
their value at once, so a bad value fails at the line that set it. What LabBatch lacks raises
NotSupportedError naming the feature.
"""

from __future__ import annotations

from app.batch.batch import (
    Batch,
    BatchFailedError,
    LocalBackend,
    ServiceBackend,
    show_user_errors_plainly,
)
from app.batch.batch import ServiceBackend as Backend  # Hail's base class of the two
from app.batch.functions import (
    BatchPoolExecutor,
    build_python_image,
    concatenate,
    plink_merge,
)
from app.batch.jobs import BashJob, Job, PythonJob
from app.batch.resources import (
    BatchException,
    InputResourceFile,
    JobResourceFile,
    NotSupportedError,
    PythonResult,
    Resource,
    ResourceFile,
    ResourceGroup,
)

__all__ = [
    "Backend",
    "BashJob",
    "Batch",
    "BatchException",
    "BatchFailedError",
    "BatchPoolExecutor",
    "InputResourceFile",
    "Job",
    "JobResourceFile",
    "LocalBackend",
    "NotSupportedError",
    "PythonJob",
    "PythonResult",
    "Resource",
    "ResourceFile",
    "ResourceGroup",
    "ServiceBackend",
    "build_python_image",
    "concatenate",
    "plink_merge",
]

show_user_errors_plainly()
