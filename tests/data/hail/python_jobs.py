"""Hail-style Python jobs: results passed on, as_str / as_json / as_repr, files as paths."""

import hailtop.batch as hb
from helpers import describe  # a module next to the script


def add(x, y):
    return x + y


def add_all(values):
    return sum(values)


def stats(path, scale):
    with open(path) as f:
        values = [int(line) for line in f]
    return {"n": len(values), "total": sum(values) * scale}


b = hb.Batch(name="python-jobs")
numbers = b.read_input("data/numbers.txt")

sums = b.new_python_job(name="sums")
three = sums.call(add, 1, 2)
seven = sums.call(add, three, 4)  # a result of the same job
ten = sums.call(add_all, [three, seven])  # results inside a list
summary = sums.call(stats, numbers, scale=10)  # a file arrives as its path

report = b.new_python_job(name="report")
text = report.call(describe, summary, label="numbers")  # a result of another job

shout = b.new_job(name="shout")
shout.command(f"tr a-z A-Z < {text.as_str()} > {shout.ofile}")

b.write_output(seven.as_str(), "out/seven.txt")
b.write_output(seven.as_repr(), "out/seven.repr")
b.write_output(ten.as_json(), "out/ten.json")
b.write_output(summary.as_json(), "out/summary.json")
b.write_output(text.as_repr(), "out/report.repr")
b.write_output(shout.ofile, "out/shout.txt")
b.run()
