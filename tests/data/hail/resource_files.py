"""Hail-style: input files, job resource files, an extension, a chain, outputs (spaces too)."""

import hailtop.batch as hb

b = hb.Batch(name="resource-files")
words = b.read_input("data/my words.txt")

sort = b.new_job(name="sort")
sort.command(f"sort {words} > {sort.ofile}")
sort.ofile.add_extension(".txt")  # after the command, as Hail's docs do it

upper = b.new_job(name="upper")
upper.command(f"tr a-z A-Z < {sort.ofile} > {upper.ofile}")

count = b.new_job(name="count")
count.command(f"wc -l < {upper.ofile} | tr -d ' ' > {count.n}")
count.command(f"head -n 1 {upper.ofile} > {count.first}")
count.command(f"echo scratch > {count.tmp} && cat {count.tmp} > /dev/null")  # stays in the job

b.write_output(upper.ofile, "out/upper.txt")
b.write_output(count.n, "out/counts/n.txt")
b.write_output(count.first, "out/final result.txt")
b.write_output(words, "out/copy of words.txt")
b.run()
