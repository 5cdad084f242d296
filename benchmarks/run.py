"""The command line: ``python -m benchmarks [--quick] [--scenario NAME ...]``.

Also runnable as ``python benchmarks/run.py``. Prints the results table and
saves it, with the raw numbers, to ``benchmarks/results/latest.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import loadgen, report
from benchmarks.procs import Cores, pin, raise_fd_limit
from benchmarks.scenarios import SCENARIOS, Outcome, Settings

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="provider_proxy's benchmarks: direct, floor and proxy, as ratios.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, one round (about 2 minutes in all)"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="wrk when installed (auto), or the suite's own asyncio client",
    )
    parser.add_argument("--seconds", type=int, help="seconds per measurement (default 5, quick 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument(
        "--cpus", help="two CPU numbers: the server's core, then the others' (default: first two)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where latest.md/json go")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raise_fd_limit()
    cores = Cores.pick([int(cpu) for cpu in args.cpus.split(",")] if args.cpus else None)
    pin(cores.other)  # this process stays off the server's core
    if cores.server == cores.other:
        report.echo("warning: one CPU core only; the server shares it with the load generator")
    generator = loadgen.tool(args.loadgen)
    names = args.scenario or list(SCENARIOS)
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="provider-proxy-bench-") as workdir:
        settings = Settings(
            quick=args.quick,
            seconds=args.seconds or (2 if args.quick else 5),
            rounds=args.rounds or (1 if args.quick else 3),
            warmup=1 if args.quick else 2,
            generator=generator,
            cores=cores,
            workdir=Path(workdir),
        )
        meta = report.machine(cores, generator, args.quick)
        for name in names:
            started = time.monotonic()
            report.echo(f"== {name}")
            outcomes[name] = SCENARIOS[name](settings)
            report.echo(f"   {time.monotonic() - started:.0f} s")
    text = report.markdown(meta, outcomes)
    print(text)
    md, raw = report.save(args.output, meta, outcomes, text)
    report.echo(f"saved {md} and {raw}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
