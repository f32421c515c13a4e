"""Command line: ``python -m reproduce {table1,sweep,tables,all,rehearse} --profile NAME``."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from jtln.seeding import CUBLAS_WORKSPACE_CONFIG
from reproduce.profile import load_profile

DEFAULT_OUT = Path("paper_tables")


def cmd_table1(profile, args):
    from reproduce.outputs import write_table1
    from reproduce.table1 import table1_columns

    out = write_table1(profile, table1_columns(profile, args.data_root, args.download), args.out)
    print(f"wrote {out / 'table1.tex'} and {out / 'table1.json'}")


def cmd_sweep(profile, args):
    from reproduce.cluster import SlurmOptions
    from reproduce.sweep import sweep

    extra = []
    for item in args.sbatch:
        if "=" not in item:
            raise ValueError(f"--sbatch takes NAME=VALUE (an sbatch option without its dashes), got {item!r}")
        extra.append(tuple(item.split("=", 1)))
    given = {"partition": args.partition, "cpus_per_task": args.cpus, "mem_gb": args.mem_gb, "gpus_per_task": args.gpus,
             "time_min": args.time, "array_parallelism": args.array_parallelism, "runs_per_task": args.runs_per_task,
             "grace_s": args.grace_s}
    slurm = SlurmOptions(sbatch=tuple(extra), **{k: v for k, v in given.items() if v is not None})  # its defaults are its own
    return sweep(profile, args.runs, args.data_root, args.download, args.executor, args.workers, slurm)


def cmd_tables(profile, args, collected=None):
    """Table 2, selected hyper-parameters, statistics, claims, figures and the report from the records of a sweep."""
    from reproduce.collect import collect
    from reproduce.outputs import write_tables

    runs = profile.runs_folder(args.runs)
    out = write_tables(profile, collected or collect(profile, runs), args.out, not args.no_report)
    print(f"wrote Table 2, hyper-parameters, statistics, claims, figures{'' if args.no_report else ' and report.html'} to {out}")


def cmd_all(profile, args):
    cmd_table1(profile, args)
    cmd_tables(profile, args, cmd_sweep(profile, args))


def at_least(low):
    """An argparse type: an integer >= ``low`` (argparse then exits 2 naming the option, before any work)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    return parse


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m reproduce", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--profile", default="fashion_mnist", help="profile name in reproduce/profiles/ or a .toml path")
        p.add_argument("--data-root", default=None, help="folder holding the dataset (overrides the profile's root)")
        p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: paper_tables/)")
        p.add_argument("--download", action="store_true", help="download the dataset where the network allows")
        return p

    common(sub.add_parser("table1", help="Table 1: the ITL datasets' properties")).set_defaults(func=cmd_table1)

    def runs_options(p):
        from reproduce.cluster import LOWEST, SlurmOptions

        p.add_argument("--runs", default=None, help="folder of the run records (default: runs/<profile>)")
        p.add_argument("--executor", choices=["local", "slurm"], default="local")
        p.add_argument("--workers", type=at_least(1), default=None, help="local processes in parallel (default: the profile's)")
        p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
        p.add_argument("--time", type=at_least(LOWEST["time_min"]),
                       help=f"SLURM time limit of an array task, minutes (default: {SlurmOptions.time_min})")
        p.add_argument("--gpus", type=at_least(LOWEST["gpus_per_task"]), help="SLURM GPUs per array task (default: 0)")
        p.add_argument("--cpus", type=at_least(LOWEST["cpus_per_task"]), default=None,
                       help="SLURM CPUs per array task (default: min(4, a node's CPUs))")
        p.add_argument("--mem-gb", type=float, default=None, help="SLURM memory per array task, GB (default: the cluster's)")
        p.add_argument("--array-parallelism", type=at_least(LOWEST["array_parallelism"]),
                       help=f"SLURM array tasks running at once (default: {SlurmOptions.array_parallelism})")
        p.add_argument("--runs-per-task", type=at_least(LOWEST["runs_per_task"]),
                       help="runs per SLURM array task (default: ~4 tasks per slot)")
        p.add_argument("--grace-s", type=float,
                       help="seconds an array task that left the queue gets for its result to appear before it is reported")
        p.add_argument("--sbatch", action="append", default=[], metavar="NAME=VALUE",
                       help="a further sbatch option, e.g. --sbatch account=lab --sbatch qos=high (repeatable)")
        p.add_argument("--no-report", action="store_true", help="skip executing the report notebook")
        return p

    runs_options(common(sub.add_parser("sweep", help="run every method x seed x ITL dataset (resumable)"))).set_defaults(func=cmd_sweep)
    runs_options(common(sub.add_parser("tables", help="Table 2, statistics, claims, figures, report"))).set_defaults(func=cmd_tables)
    runs_options(common(sub.add_parser("all", help="table1, sweep, tables"))).set_defaults(func=cmd_all)
    from reproduce import rehearsal

    rehearse = common(sub.add_parser("rehearse", help="the profile at its real scale on stand-in images: times, memory, the full "
                                     "profile's projected wall time (FGVC-Aircraft profiles; --data-root: the real annotations)"))
    rehearsal.add_arguments(rehearse).set_defaults(func=lambda profile, args: rehearsal.cmd_rehearse(profile, args))
    return parser


def check_writable(path, flag):
    """``path`` is a folder this user can write, or can create: raise ValueError naming the flag otherwise; creates nothing."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {path} cannot be created: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(f"{flag} {path} is not a folder this user can write: {error.strerror or error}") from error


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)  # before anything uses CUDA (jtln.seeding)
    try:
        profile = load_profile(args.profile)  # parsed and checked once, before any work
        if args.command in ("table1", "tables", "all"):
            check_writable(args.out, "--out")
        if args.command in ("sweep", "all"):
            check_writable(profile.runs_folder(args.runs), "--runs")
        if args.command in ("table1", "sweep", "all"):
            from reproduce.preflight import preflight

            preflight(profile, args.command, args.data_root, args.download, getattr(args, "runs", None), getattr(args, "workers", None),
                      getattr(args, "executor", "local"))
        args.func(profile, args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished runs are kept, and the same command resumes", file=sys.stderr)
        return 130
    except Exception as error:
        from reproduce.cluster import SlurmError
        from reproduce.execute import Diverged, Terminated

        if isinstance(error, (SlurmError, Diverged)):
            print(f"error: {error}", file=sys.stderr)
            return 1
        if not isinstance(error, Terminated):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
