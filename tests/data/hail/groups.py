"""Hail-style resource groups: an input group, a job's group, a member used alone."""

import hailtop.batch as hb

b = hb.Batch(name="groups")
bfile = b.read_input_group(bed="data/geno.bed", bim="data/geno.bim", fam="data/geno.fam")

filtered = b.new_job(name="filter")
filtered.declare_resource_group(
    ofile={"bed": "{root}.bed", "bim": "{root}.bim", "fam": "{root}.fam"}
)
filtered.command(f"for m in bed bim fam; do sed 's/^/f:/' {bfile}.$m > {filtered.ofile}.$m; done")

stats = b.new_job(name="stats")
stats.command(f"wc -l < {filtered.ofile.fam} | tr -d ' ' > {stats.ofile}")
stats.command(f"cat {filtered.ofile.bim} >> {stats.ofile}")

b.write_output(filtered.ofile, "out/filtered")
b.write_output(stats.ofile, "out/stats.txt")
b.write_output(bfile, "out/raw")
b.run()
