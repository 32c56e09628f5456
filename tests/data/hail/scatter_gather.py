"""Hail-style scatter-gather: parts made in parallel, hb.concatenate, a job on the result."""

import hailtop.batch as hb

b = hb.Batch(name="scatter-gather")
parts = []
for i in range(5):
    part = b.new_job(name=f"part-{i}")
    part.command(f"seq {i * 3 + 1} {i * 3 + 3} > {part.ofile}")
    parts.append(part.ofile)

merged = hb.concatenate(b, parts, branching_factor=2)
total = b.new_job(name="total")
total.command(f"awk '{{s += $1}} END {{print s}}' {merged} > {total.ofile}")

assert [j.name for j in b.select_jobs("part-")] == [f"part-{i}" for i in range(5)]
b.write_output(merged, "out/all.txt")
b.write_output(total.ofile, "out/total.txt")
b.run()
