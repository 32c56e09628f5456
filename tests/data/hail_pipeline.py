"""A hailtop.batch-style pipeline: index once, count each sample, summarise, always report."""

import app.batch as hb

b = hb.Batch(name="hail-pipeline", attributes={"study": "demo"}, cancel_after_n_failures=2)

index = b.new_job(name="index")
index.cpu(1).memory("lowmem").storage("1Gi")
index.env("GREETING", "hello")
index.command('echo "$GREETING" > "$LABBATCH_BATCH_DIR/index.txt"')
index.command("echo indexed")

counts = []
for sample in ["a", "b"]:
    count = b.new_job(name=f"count-{sample}")
    count.depends_on(index).env("SAMPLE", sample).timeout(60)
    count.command('cat "$LABBATCH_BATCH_DIR/index.txt" > "$LABBATCH_BATCH_DIR/$SAMPLE.count"')
    counts.append(count)

summary = b.new_job()  # unnamed: job-4
summary.depends_on(*counts).cpu("500m").memory("1Gi")
summary.command('cat "$LABBATCH_BATCH_DIR"/*.count')

report = b.new_bash_job()  # unnamed: job-5
report.depends_on(summary).always_run()
report.command("echo report")

if __name__ == "__main__":
    b.run()
