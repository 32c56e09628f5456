"""examples/files.yaml as a Hail Batch script: `labbatch run examples/hail_files.py`.

It runs unchanged on Hail Batch (`import hailtop.batch as hb`); under LabBatch the same import
works with `labbatch run` and `labbatch import`, and `import app.batch as hb` with plain python.
Results go to results/ under the current directory, as Hail's LocalBackend writes them.
"""

import os

import hailtop.batch as hb

HERE = os.path.dirname(os.path.abspath(__file__))


def matching_reads(kmers_path, reads):
    """How many reads of each sample are a 3-mer of the reference."""
    with open(kmers_path) as f:
        kmers = {line.split("\t")[0] for line in f}
    counts = {}
    for sample, path in sorted(reads.items()):
        with open(path) as f:
            counts[sample] = sum(1 for line in f if line.strip() in kmers)
    return counts


b = hb.Batch(name="hail-files")
reference = b.read_input(os.path.join(HERE, "data", "reference.fa"))
samples = b.read_input_group(
    a=os.path.join(HERE, "data", "sample-a.txt"), b=os.path.join(HERE, "data", "sample-b.txt")
)

index = b.new_job(name="index")
index.command(
    f"grep -v '^>' {reference} | fold -w 3 | sort | uniq -c | awk '{{print $2 \"\\t\" $1}}' "
    f"> {index.kmers}"
)
index.kmers.add_extension(".tsv")

count = b.new_python_job(name="count")
counts = count.call(matching_reads, index.kmers, samples)  # a group arrives as {member: path}

report = b.new_job(name="report")
report.command(f'echo "3-mers in the reference: $(wc -l < {index.kmers})" > {report.summary}')
report.command(f'echo "matching reads: $(cat {counts.as_json()})" >> {report.summary}')

b.write_output(report.summary, "results/summary.txt")
b.write_output(counts.as_json(), "results/counts.json")
b.write_output(index.kmers, "results/kmers.tsv")
b.run()
