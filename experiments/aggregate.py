"""Aggregate a sweep's run folders into tidy CSVs and ``summary.json``.

    python -m experiments.aggregate outputs/sweeps/nf_vs_baseline \
        [--baseline single_step] [--late-step S] [--bootstrap-reps N] [--no-eval]

writes ``<sweep>/aggregate/``; what each file holds and the statistical rules are in
``experiments.results.aggregate`` and its parts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.results.aggregate import aggregate_sweep
from experiments.results.run_folders import AGGREGATE_DIR, RunFolderError
from experiments.results.summary import DEFAULT_BASELINE, DEFAULT_REPS, Summary


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not valid; must be an integer >= 1")
    return value


def add_aggregate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``aggregate_sweep`` (shared with ``experiments.report``)."""
    parser.add_argument("sweep", type=Path, help="sweep folder, e.g. outputs/sweeps/<name>")
    parser.add_argument(
        "--baseline", default=DEFAULT_BASELINE, help="variant the others are compared with"
    )
    parser.add_argument(
        "--late-step",
        type=float,
        default=None,
        help="step of the baseline's late value (convergence target); default the last "
        "evaluation step it shares with each variant",
    )
    parser.add_argument(
        "--bootstrap-reps", type=_positive_int, default=DEFAULT_REPS, help="bootstrap replicates"
    )
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="training curves only: do not list runs without eval.json as missing",
    )


def aggregate_from_args(args: argparse.Namespace) -> Summary:
    """``aggregate_sweep`` with the parsed arguments; on bad input prints ``error: ...``
    and exits with status 2."""
    try:
        return aggregate_sweep(
            args.sweep, args.baseline, args.late_step, args.bootstrap_reps, not args.no_eval
        )
    except RunFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def print_gaps(summary: Summary) -> None:
    """The missing runs and the notes, one line each, on stderr."""
    for gap in summary.missing:
        print(f"missing ({gap.scope}): {gap.reason}", file=sys.stderr)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.aggregate", description=__doc__.split("\n\n")[0]
    )
    add_aggregate_arguments(parser)
    summary = aggregate_from_args(parser.parse_args(argv))
    print_gaps(summary)
    used = summary.provenance.runs_used
    print(
        f"wrote {Path(summary.sweep) / AGGREGATE_DIR} ({used} runs, {len(summary.missing)} missing)"
    )


if __name__ == "__main__":
    main()
