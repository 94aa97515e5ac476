"""The command line: ``python -m edsim run scenario.yaml`` and ``python -m edsim check history.csv``.

    python -m edsim run scenario.yaml                      # the summary and the anomalies found
    python -m edsim run scenario.json --seed 3 --history out.csv
    python -m edsim run scenario.yaml --seeds 0..99        # a sweep, with a progress bar on stderr
    python -m edsim check out.csv                          # the checker on a saved history

Exit status: 0 when nothing was found, 1 when the checker found anomalies, 2 on bad input (a file that cannot
be read, a setting Kafka refuses, a bad option), so that scripts can use it.
"""
from __future__ import annotations

import argparse
import sys

from .configs import ConfigError
from .faults import FaultError

CLEAN, FOUND, BAD_INPUT = 0, 1, 2
CASES_SHOWN = 3


class BadInput(Exception):
    """A command-line value that cannot be used; its message says why."""


def parse_seeds(text: str) -> list[int]:
    """``0..99`` (both ends included), ``7``, or ``1,4,9``."""
    try:
        if ".." in text:
            first, last = (int(x) for x in text.split(".."))
            if last < first:
                raise BadInput(f"--seeds {text}: the last seed is below the first")
            return list(range(first, last + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise BadInput(f"--seeds {text!r} is not allowed: seeds are FIRST..LAST (e.g. 0..99), one seed, "
                       "or a list such as 1,4,9") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edsim", description="Run edsim scenario files and check "
                                     "histories. Exit status: 0 clean, 1 anomalies found, 2 bad input.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a scenario file (.yaml, .yml or .json)")
    run.add_argument("scenario", help="the scenario file (Scenario.save writes one)")
    run.add_argument("--seed", type=int, help="run with this seed instead of the file's")
    run.add_argument("--seeds", help="a sweep over seeds: FIRST..LAST, one seed, or a list such as 1,4,9")
    run.add_argument("--history", metavar="PATH", help="save the run's history (.csv, or .parquet with pyarrow)")
    run.add_argument("--import", dest="allow_import", action="store_true",
                     help="allow the file to name service classes outside edsim (imports and runs their module)")
    run.add_argument("--progress", action="store_true", help="show a progress bar on stderr for a single run")
    check = commands.add_parser("check", help="run the checker on a saved history (.csv or .parquet)")
    check.add_argument("history", help="the history file (python -m edsim run --history writes one)")
    return parser


def _print_anomalies(anomalies: dict, cases: dict, out) -> bool:
    found = {name: count for name, count in anomalies.items() if count}
    if not found:
        print("anomalies: none", file=out)
        return False
    print("anomalies:", file=out)
    for name, count in found.items():
        print(f"  {name}: {count}", file=out)
        frame = cases.get(name)
        if frame is not None and "evidence" in frame:
            for text in list(frame["evidence"])[:CASES_SHOWN]:
                print(f"    - {text}", file=out)
            if len(frame) > CASES_SHOWN:
                print(f"    ... and {len(frame) - CASES_SHOWN} more", file=out)
    return True


def run_command(args, out) -> int:
    from .scenario import Scenario
    scenario = Scenario.load(args.scenario, allow_import=args.allow_import)
    if args.seeds is not None:
        if args.history is not None:
            raise BadInput("--history saves the history of one run: leave out --seeds (or run one --seed)")
        if args.seed is not None:
            raise BadInput("give --seed (one run) or --seeds (a sweep), not both")
        from .sweep import sweep
        seeds = parse_seeds(args.seeds)
        table = sweep(scenario, seeds=seeds, progress=True)
        from .checker import ANOMALIES
        kinds = set(ANOMALIES) | {invariant.name for invariant in scenario.invariants}
        names = [c for c in table.columns if c in kinds]
        print(table.to_string(index=False), file=out)
        totals = {name: int((table[name] > 0).sum()) for name in names}
        found = {name: runs for name, runs in totals.items() if runs}
        print(f"\n{len(table)} runs; " + ("runs with each anomaly: " + ", ".join(f"{k} {v}" for k, v in found.items())
                                          if found else "no anomalies in any run"), file=out)
        return FOUND if found else CLEAN
    if args.history is not None:
        from pathlib import Path
        from .history_file import _format
        _format(Path(args.history))                      # refuse a bad path before the run, not after
    result = scenario.run(seed=args.seed, progress=True if args.progress else None)
    print(result.summary().to_string(), file=out)
    print(file=out)
    found = _print_anomalies(result.anomalies, result.anomaly_cases, out)
    if args.history is not None:
        from .history_file import save_history
        save_history(result.history, args.history)
        print(f"history: {len(result.history)} rows saved to {args.history}", file=out)
    return FOUND if found else CLEAN


def check_command(args, out) -> int:
    from . import checker
    from .history_file import load_history
    frame = load_history(args.history)
    report = checker.check(frame)
    print(f"{args.history}: {len(frame)} rows", file=out)
    return FOUND if _print_anomalies(report.anomalies, report.cases, out) else CLEAN


def main(argv=None, out=None) -> int:
    out = out if out is not None else sys.stdout
    args = _parser().parse_args(argv)              # argparse exits 2 on a bad option
    try:
        if args.command == "run":
            return run_command(args, out)
        return check_command(args, out)
    except (BadInput, ConfigError, FaultError) as e:
        print(f"edsim: {e}", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
