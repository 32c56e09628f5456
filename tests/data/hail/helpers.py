"""A module next to a script: its functions travel with the Python job that calls them."""


def describe(summary, label):
    return f"{label}: {summary['n']} values, total {summary['total']}"
