"""The `labbatch` argument parser, kept light: building it imports no engine, database or Qt.

`labbatch --help` and argument errors end here; each command's module (and what it needs)
is imported only once its command is chosen. The few values the help text shows are copies
of the engine's, and tests/test_startup.py checks they agree.
"""

from __future__ import annotations

import argparse
from typing import Any

from app import __version__

# Copies of engine values (importing their modules would load SQLAlchemy): see the module doc.
POOL_CLOUDS = ("local", "gcp", "azure")  # app.engine.workers.pools.CLOUDS
PRICE_CLOUDS = ("gcp", "azure")  # app.engine.billing.rates.CLOUDS
DEFAULT_POOL_NAME = "local"  # app.models.db.DEFAULT_POOL_NAME
JOB_REF_HELP = "job id or name; name:NAME for a name made of digits (digits are an id first)"
IMPORT_SUFFIXES = (".py", ".graphml", ".dot", ".gv", ".yaml", ".yml", ".json")  # importers
DEFAULT_SCRIPT_TIMEOUT_S = 60.0  # app.models.importers.hail_script

POOL_SETTINGS = {
    # flag: (PoolConfig field, parser, help)
    "worker_cores": ("worker_cores_mcpu", "cores", "cores per worker"),
    "min": ("min_instances", "int", "instances kept running even when idle"),
    "max": ("max_instances", "int", "most instances the pool may have"),
    "max_live": ("max_live_instances", "int", "most instances booting or running at once"),
    "max_new": ("max_new_instances_per_loop", "int", "most instances created per autoscaler loop"),
    "standing_cores": ("standing_worker_cores_mcpu", "cores", "cores of the standing workers"),
    "idle_timeout": ("idle_timeout_s", "float", "seconds before an idle worker retires"),
    "boot_time": ("boot_time_s", "float", "seconds a worker takes to start (local: a delay)"),
    "boot_deadline": (
        "boot_deadline_s",
        "float",
        "seconds a new cloud worker may take to answer before its VM is deleted (600)",
    ),
    "price": ("price_per_core_hour_usd", "usd", "USD per core-hour (local pools; default 0)"),
    "machine_type": ("machine_type", "str", "the cloud's machine type (Azure: the VM size)"),
    "regions": ("regions", "list", "comma-separated regions (cloud pools: from their zones)"),
    "scratch": (
        "scratch",
        "location",
        "where jobs' output files are kept (default: <data dir>/scratch)",
    ),
    "retention": ("retention_s", "duration", "how long a finished batch's files stay (default 3d)"),
}
POOL_ALIASES = {"max": ["--max-instances"], "machine_type": ["--vm-size"]}

# Cloud settings, stored in the pool's config: flag -> (config key, parser, clouds, help)
POOL_CLOUD_SETTINGS = {
    "project": ("project", "str", "gcp", "Google Cloud project ID"),
    "zones": ("zones", "list", "gcp", "comma-separated zones, tried in order"),
    "boot_disk_gb": ("boot_disk_gb", "int", "gcp", "boot disk size in GB (default 20)"),
    "network": ("network", "str", "gcp", "VPC network (default: default)"),
    "subnetwork": ("subnetwork", "str", "gcp", "subnetwork of that network"),
    "use_internal_ip": ("use_internal_ip", "bool", "gcp", "dial the VMs' internal IP (VPN)"),
    "network_tag": ("network_tag", "str", "gcp", "network tag the firewall rule targets"),
    "api_endpoint": ("api_endpoint", "str", "gcp", "another Compute Engine API address"),
    "subscription": ("subscription_id", "str", "azure", "Azure subscription ID"),
    "resource_group": ("resource_group", "str", "azure", "resource group of the VMs"),
    "location": ("location", "str", "azure", "Azure location, e.g. westeurope"),
    "fallback_vm_sizes": ("fallback_vm_sizes", "list", "azure", "sizes tried when one fails"),
    "subnet_id": ("subnet_id", "str", "azure", "ARM id of the subnet the VMs join"),
    "ssh_public_key": ("ssh_public_key", "key", "azure", "SSH public key, or a file holding it"),
    "use_private_ip": ("use_private_ip", "bool", "azure", "no public IP; dial the private one"),
    "base_url": ("base_url", "str", "azure", "another Resource Manager address"),
    "image": ("image", "str", "gcp,azure", "boot image (Azure: publisher:offer:sku:version)"),
    "allow_from": ("allow_from", "list", "gcp,azure", "CIDRs that may reach the worker port"),
    "worker_port": ("worker_port", "int", "gcp,azure", "port the workers listen on (8443)"),
    "worker_requirement": ("worker_requirement", "str", "gcp,azure", "pip requirement"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `labbatch` argument parser (light: no command module is imported).

    Given the ``command`` that the command line starts with, only that command's parser is
    built: the other commands' parsers cost every command ~15-25 ms of start-up.
    """

    def wanted(*names: str) -> bool:
        return command is None or command in names

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help="database: sqlite:///path.db or postgresql://user@host/db "
        "(default: $LABBATCH_DB or a SQLite file in the user data dir)",
    )
    common.add_argument("--user", help="who you are (default: $LABBATCH_USER or your login)")
    common.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")

    parser = argparse.ArgumentParser(
        prog="labbatch",
        description="Run job DAGs on a fair-shared pool of workers, and watch them live. "
        "With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"labbatch {__version__}")
    parser.add_argument(
        "--db",
        dest="gui_db",
        metavar="URL",
        help="the database, for the desktop app or the command that follows (default: the "
        "desktop's settings, else $LABBATCH_DB or a SQLite file in the user data dir)",
    )
    parser.add_argument(
        "--user", dest="gui_user", metavar="NAME", help="who you are, for the app or the command"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    if wanted("validate"):
        p = sub.add_parser("validate", parents=[common], help="check a DAG file; store nothing")
        p.add_argument("file")

    if wanted("run"):
        p = sub.add_parser(
            "run",
            parents=[common],
            help="submit a DAG and run it on a local pool",
            description="Run a DAG file on a local pool, or a hailtop.batch-style SCRIPT.py "
            "(run with `import hailtop.batch` working; its b.run() runs the batch).",
        )
        p.add_argument("file", help="a DAG file, or a hailtop.batch-style script (.py)")
        p.add_argument(
            "script_args", nargs="*", help="arguments of a script (after `--` if they start with -)"
        )
        p.add_argument(
            "--cores",
            type=float,
            default=None,
            help="cores per local worker (default: all cores of this machine)",
        )
        p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")

    if wanted("submit"):
        p = sub.add_parser("submit", parents=[common], help="store a DAG; print its batch id")
        p.add_argument("file")

    if wanted("serve"):
        p = sub.add_parser(
            "serve", parents=[common], help="run the driver and a local pool until Ctrl-C"
        )
        p.add_argument(
            "--cores", type=float, default=None, help="cores per local worker (default: as stored)"
        )
        p.add_argument(
            "--workers", type=int, default=None, help="local worker processes (default: as stored)"
        )

    if wanted("status"):
        p = sub.add_parser("status", parents=[common], help="show a batch")
        p.add_argument("batch", type=int)
        p.add_argument("--json", action="store_true")

    if wanted("jobs"):
        p = sub.add_parser("jobs", parents=[common], help="list a batch's jobs")
        p.add_argument("batch", type=int)
        p.add_argument(
            "--state", help="only jobs in this state (pending, ready, running, success, …)"
        )
        p.add_argument("--json", action="store_true")

    if wanted("log"):
        p = sub.add_parser("log", parents=[common], help="print a job's log")
        p.add_argument("batch", type=int)
        p.add_argument("job", help=JOB_REF_HELP)
        p.add_argument("--attempt", type=int, help="a given attempt (default: the last)")

    if wanted("cancel"):
        p = sub.add_parser("cancel", parents=[common], help="cancel a batch")
        p.add_argument("batch", type=int)

    if wanted("retry"):
        p = sub.add_parser("retry", parents=[common], help="run a finished batch's failures again")
        p.add_argument("batch", type=int)
        p.add_argument(
            "--failed",
            action="store_true",
            help="only failed jobs and what depends on them (not jobs a cancel stopped)",
        )

    if wanted("why"):
        p = sub.add_parser("why", parents=[common], help="why a job is not running (yet)")
        p.add_argument("batch", type=int)
        p.add_argument("job", help=JOB_REF_HELP)

    if wanted("pool"):
        add_pool_parser(sub, common)
    if wanted("billing", "cost", "estimate"):
        add_billing_parsers(sub, common)
    if wanted("prices"):
        add_price_parser(sub, common)
    if wanted("import"):
        add_import_parser(sub, common)
    if wanted("files", "get"):
        add_files_parsers(sub, common)
    if wanted("timeline"):
        add_timeline_parser(sub, common)

    if wanted("list"):
        p = sub.add_parser("list", parents=[common], help="list your batches")
        p.add_argument("--all", action="store_true", help="every user's batches")
        p.add_argument("--limit", type=int, default=20)
        p.add_argument("--json", action="store_true")

    return parser


def add_pool_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch pool ...` to the subcommands."""
    pool = sub.add_parser("pool", parents=[common], help="list, show, create, change, scale pools")
    actions = pool.add_subparsers(dest="pool_command", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="every pool").add_argument(
        "--json", action="store_true"
    )
    show = actions.add_parser("show", parents=[common], help="a pool and its instances")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    for action, help_text in (("create", "a new pool"), ("set", "change a pool's settings")):
        p = actions.add_parser(action, parents=[common], help=help_text)
        p.add_argument("name")
        if action == "create":
            p.add_argument(
                "--cloud",
                default="local",
                choices=POOL_CLOUDS,
                help="local worker processes (default), gcp or azure VMs (see docs/clouds.md)",
            )
        for flag, (_field, _kind, text) in POOL_SETTINGS.items():
            names = [f"--{flag.replace('_', '-')}", *POOL_ALIASES.get(flag, [])]
            p.add_argument(*names, dest=flag, help=text)
        p.add_argument(
            "--preemptible",
            "--spot",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="spot VMs: cheaper, but the cloud may take them back (jobs then run again)",
        )
        cloud = p.add_argument_group("cloud settings (gcp, azure; see docs/clouds.md)")
        for flag, (_key, kind, clouds, text) in POOL_CLOUD_SETTINGS.items():
            name = f"--{flag.replace('_', '-')}"
            if kind == "bool":
                cloud.add_argument(
                    name, dest=flag, action=argparse.BooleanOptionalAction, help=f"{clouds}: {text}"
                )
            else:
                cloud.add_argument(name, dest=flag, help=f"{clouds}: {text}")
        if action == "set":
            p.add_argument(
                "--shared",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="local pool, lab database: run every user's jobs while you drive it "
                "(they run under your OS account); default: only yours",
            )
    scale = actions.add_parser(
        "scale", parents=[common], help="hold a pool at N instances ('auto': release it)"
    )
    scale.add_argument("name")
    scale.add_argument("instances", type=scale_count, help="a number, or 'auto' to release it")
    offers = actions.add_parser(
        "offers", parents=[common], help="machine types (VM sizes) a cloud pool's zones offer"
    )
    offers.add_argument("name")
    offers.add_argument("--json", action="store_true")


def add_billing_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch billing ...`, `cost` and `estimate` to the subcommands."""
    billing = sub.add_parser("billing", parents=[common], help="billing projects and limits")
    actions = billing.add_subparsers(dest="billing_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", parents=[common], help="projects, members, limits, spend")
    p.add_argument("--json", action="store_true")
    p = actions.add_parser("create", parents=[common], help="a new billing project")
    p.add_argument("name")
    p.add_argument("--limit", help="USD; batches are refused and cancelled beyond it")
    p.add_argument("--users", help="comma-separated members (default: open to everyone)")
    p = actions.add_parser("set", parents=[common], help="change a project's limit")
    p.add_argument("name")
    p.add_argument("--limit", required=True, help="USD, or 'none' for no limit")
    for action in ("add-user", "remove-user"):
        p = actions.add_parser(action, parents=[common], help=f"{action.split('-')[0]} a member")
        p.add_argument("name")
        p.add_argument("user")

    p = sub.add_parser("cost", parents=[common], help="what has been spent, grouped")
    p.add_argument("--by", choices=("user", "billing_project", "batch", "day"), default="user")
    p.add_argument("--days", type=int, default=30, help="with --by day: how far back")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("estimate", parents=[common], help="expected cost and time of a DAG")
    p.add_argument("file")
    p.add_argument(
        "--pool", default=None, help=f"the pool to price it on (default: {DEFAULT_POOL_NAME})"
    )
    p.add_argument(
        "--default-duration",
        type=float,
        default=60.0,
        help="seconds assumed for jobs with no expected_duration or timeout",
    )


def add_price_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch prices` to the subcommands."""
    p = sub.add_parser("prices", parents=[common], help="cloud list prices: refresh, show")
    actions = p.add_subparsers(dest="prices_command", metavar="ACTION", required=True)
    refresh = actions.add_parser(
        "refresh",
        parents=[common],
        help="read the prices of your cloud pools from the clouds' pricing APIs",
    )
    refresh.add_argument(
        "--cloud", choices=PRICE_CLOUDS, help="only this cloud (default: every cloud with a pool)"
    )
    refresh.add_argument(
        "--endpoint", metavar="URL", help="another API address (with --cloud; for tests)"
    )
    show = actions.add_parser("show", parents=[common], help="the prices billing uses")
    show.add_argument("--cloud", choices=PRICE_CLOUDS, help="only this cloud (default: both)")
    show.add_argument("--json", action="store_true")


def add_import_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch import` to the subcommands."""
    p = sub.add_parser(
        "import",
        parents=[common],
        help="turn a hailtop.batch-style script, GraphML or DOT file into a DAG file",
        description="Import a DAG: SCRIPT.py (hailtop.batch-style, run in a child process), "
        "FILE.graphml, FILE.dot / FILE.gv, or a DAG file (.yaml/.yml/.json); write it as a "
        "validated YAML DAG file.",
    )
    p.add_argument("file", help="the file to import: " + ", ".join(IMPORT_SUFFIXES))
    p.add_argument(
        "-o",
        "--output",
        metavar="DAG.yaml",
        help="where to write the DAG file; '-' for stdout (default: FILE with suffix .yaml)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_SCRIPT_TIMEOUT_S,
        help=f"seconds a script may run (default {DEFAULT_SCRIPT_TIMEOUT_S:g})",
    )


def add_files_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch files` and `labbatch get` to the subcommands."""
    p = sub.add_parser(
        "files",
        parents=[common],
        help="list a batch's output files and their sizes (local or in a bucket)",
    )
    p.add_argument("batch", type=int)
    p.add_argument("job", nargs="?", help="only this job's (id or name)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "get",
        parents=[common],
        help="copy a job's output file here, from local scratch or a bucket",
    )
    p.add_argument("batch", type=int)
    p.add_argument("output", metavar="JOB.OUTPUT", help="e.g. align.bam")
    p.add_argument("dest", nargs="?", help="a file or directory (default: here)")


def scale_count(text: str) -> int | None:
    """`pool scale`'s count: a number of instances, or 'auto' (None)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of instances, or 'auto'") from None


def add_timeline_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch timeline` to the subcommands."""
    p = sub.add_parser(
        "timeline",
        parents=[common],
        help="write a batch's timeline (attempts by worker over time) as an HTML file",
        description="Write a batch's timeline: each attempt a bar on its worker's row, "
        "coloured by outcome, staging drawn apart from the run. The file is self-contained "
        "(no network needed to open it) and zooms with its +/- buttons or Ctrl + wheel.",
    )
    p.add_argument("batch", type=int)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE.html",
        help="where to write it; '-' for stdout (default: batch-BATCH-timeline.html)",
    )
