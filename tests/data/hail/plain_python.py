"""Run with plain `python`: `import app.batch as hb` and files from the current directory."""

import app.batch as hb

b = hb.Batch(name="plain-python")
words = b.read_input("data/my words.txt")
first = b.new_job(name="first")
first.command(f"head -n 1 {words} > {first.ofile}")
b.write_output(first.ofile, "out/first.txt")
b.run()
