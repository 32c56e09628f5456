"""Written for Hail Batch: imports `hailtop.batch`, which `labbatch import` provides."""

import hailtop.batch as hb

backend = hb.ServiceBackend(billing_project="lab-x", remote_tmpdir="gs://bucket/tmp")
b = hb.Batch(backend=backend, name="from-hail", default_cpu=2, default_timeout=600)
first = b.new_job(name="first step")
first.command("echo first")
second = b.new_job(name="first step")
second.depends_on(first).command("echo second")
b.run(open=False, disable_progress_bar=True)
