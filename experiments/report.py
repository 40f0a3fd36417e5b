"""The report of a sweep: ``REPORT.md`` with its tables and figures, optionally on wandb.

    python -m experiments.report outputs/sweeps/nf_vs_baseline [--wandb offline|online|disabled]
        [--baseline single_step] [--late-step S] [--bootstrap-reps N] [--no-eval]

aggregates the sweep first (``experiments.aggregate``: ``<sweep>/aggregate/``), then writes
``<sweep>/REPORT.md`` and its PNG figures under ``<sweep>/report/``. The header states the
git commits and dirty flags of the runs and the runs left out. Every number of the tables
and figures is read from the :class:`~experiments.results.summary.Summary`, so each can be traced
in ``summary.json`` to its run folders. With ``--wandb offline|online`` the tables (as
``wandb.Table``) and figures are also logged to one summary run (offline needs no network);
a wandb failure is reported on stderr and never stops the report.
"""

from __future__ import annotations

import argparse

from experiments.aggregate import add_aggregate_arguments, aggregate_from_args, print_gaps
from experiments.config.train import WANDB_MODES
from experiments.results.report import write_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report", description=__doc__.split("\n\n")[0]
    )
    add_aggregate_arguments(parser)
    parser.add_argument(
        "--wandb", choices=WANDB_MODES, default="disabled", help="also log to a wandb run"
    )
    args = parser.parse_args(argv)
    summary = aggregate_from_args(args)
    print_gaps(summary)
    print(f"wrote {write_report(args.sweep, summary, wandb_mode=args.wandb)}")


if __name__ == "__main__":
    main()
