"""Hail-style failures: a failed command, its child, always_run, a timeout, a Python error."""

import hailtop.batch as hb


def divide(x, y):
    return x / y


b = hb.Batch(name="failures")
ok = b.new_job(name="ok")
ok.command(f"echo fine > {ok.ofile}")

bad = b.new_job(name="bad")
bad.command(f"echo partial > {bad.ofile}")
bad.command("exit 3")  # the commands after a failed one do not run
bad.command(f"echo never > {bad.ofile}")

child = b.new_job(name="child")
child.command(f"cat {bad.ofile} > {child.ofile}")

cleanup = b.new_job(name="cleanup").always_run()
cleanup.depends_on(bad)
cleanup.command(f"cat {ok.ofile} > {cleanup.ofile}")

slow = b.new_job(name="slow").timeout(1)
slow.command(f"sleep 30; echo late > {slow.ofile}")

boom = b.new_python_job(name="boom")
quotient = boom.call(divide, 1, 0)

for name, resource in [
    ("ok", ok.ofile),
    ("bad", bad.ofile),
    ("child", child.ofile),
    ("cleanup", cleanup.ofile),
    ("slow", slow.ofile),
    ("boom", quotient.as_str()),
]:
    b.write_output(resource, f"out/{name}.txt")
b.run()
