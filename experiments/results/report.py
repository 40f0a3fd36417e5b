"""``REPORT.md`` of a sweep (``python -m experiments.report``): its tables, figures and wandb run.

``write_report`` writes ``<sweep>/REPORT.md`` and its PNG figures under ``<sweep>/report/``
from a :class:`~experiments.results.summary.Summary`, so every number can be traced in
``summary.json`` to its run folders; the header states the runs' git commits, dirty flags and
the runs left out. With ``wandb_mode`` offline or online the tables (``wandb.Table``) and
figures also go to one summary run; a wandb failure is reported on stderr and never stops
the report.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config.train import WANDB_MODES, LoggerConfig
from experiments.results.entries import RelativeImprovement
from experiments.results.eval_file import MODEL_POLICIES, SPEED_MODES
from experiments.results.figures import Entry, FigureFile, report_figures, select, slices, tasks_of
from experiments.results.run_folders import REPORT_DIR, SCOPE_EVAL
from experiments.results.summary import (
    ALL_TASKS,
    FINAL_LOSSES,
    MATCHED_FLOPS,
    SPEEDUP,
    SUCCESS_AT,
    SUCCESS_AUC,
    Summary,
)
from worldmodel import atomic

REPORT_FILE = "REPORT.md"
DRIFT_TABLE_METRIC = "latent_mse"
SCOPES = {SCOPE_EVAL: "final success, drift, speed"}  # any other scope: everything


@dataclass
class Table:
    """A table of the report, rendered as markdown and logged as a ``wandb.Table``."""

    section: str
    title: str
    columns: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

        header = [f"**{self.title}**", "", line(self.columns), line(["---"] * len(self.columns))]
        return "\n".join(header + [line(row) for row in self.rows])


# ------------------------------------------------------------------ cells
def num(value: float | int | None) -> str:
    """A number as the tables print it: integers whole, large values with one decimal,
    others with three; "n/a" for an undefined value."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def interval(entry: Entry, i: int | None = None) -> str:
    """``point [low, high]`` of an estimate (or of position ``i`` of a curve entry)."""
    bounds = (entry.point, entry.low, entry.high)
    point, low, high = bounds if i is None else (values[i] for values in bounds)
    return f"{num(point)} [{num(low)}, {num(high)}]"


def success_cell(entry: Entry) -> str:
    counts = f"{entry.successes}/{entry.episodes}"
    return f"{interval(entry)} · {counts} episodes · {entry.n_runs} runs"


def improvement_cell(improvement: RelativeImprovement) -> str:
    """``value @ step``, with the episodes behind both success rates when known."""
    cell = f"{num(improvement.value)} @ {num(improvement.step)}"
    if improvement.variant_episodes is not None:
        cell += f" ({improvement.variant_episodes} vs {improvement.base_episodes} episodes)"
    return cell


def _in(entries: Sequence[Entry], setting: str, fps: float) -> list[Entry]:
    return select(entries, setting=setting, fps=fps)


def _ordered(entries: Sequence[Entry], key: str) -> list[str]:
    return list(dict.fromkeys(getattr(e, key) for e in entries))


def _lookup(entries: Sequence[Entry], **match: Any) -> Entry | None:
    found = select(entries, **match)
    return found[0] if found else None


# ------------------------------------------------------------------ tables
def _policy_order(name: str) -> tuple[bool, int, str]:
    """The model's policies first, then the reference policies alphabetically."""
    own = name in MODEL_POLICIES
    return (not own, MODEL_POLICIES.index(name) if own else 0, name)


def success_table(summary: Summary, setting: str, fps: float) -> Table | None:
    """Final closed-loop success, a column per task (and the IQM across tasks); the model's
    rows for every variant, the reference policies' rows for the baseline variant."""
    entries = [e for e in _in(summary.estimates, setting, fps) if e.quantity.startswith("success/")]
    if not entries:
        return None
    tasks = tasks_of(entries)
    variants = _ordered(entries, "variant")
    reference = summary.settings.baseline if summary.settings.baseline in variants else variants[0]
    rows = []
    for variant in variants:
        own = [e for e in entries if e.variant == variant]
        for name in sorted({e.quantity.removeprefix("success/") for e in own}, key=_policy_order):
            if name not in MODEL_POLICIES and variant != reference:
                continue
            policy = f"success/{name}"
            cells = [_lookup(own, quantity=policy, task=task) for task in tasks]
            rows.append([variant, name, *(success_cell(c) if c else "–" for c in cells)])
    columns = ["variant", "policy", *("all tasks (IQM)" if t == ALL_TASKS else t for t in tasks)]
    where = f"{setting}, {summary.settings.frame_rate(fps)}"
    title = f"Final closed-loop success rate ({where}): mean over seeds [95% CI]"
    return Table("success", title, columns, rows)


def convergence_table(summary: Summary) -> Table | None:
    """Each variant against the baseline: speed-up and relative improvement."""
    if not summary.convergence:
        return None
    rows = []
    for c in summary.convergence:
        improvement = c.relative_improvement
        at = "n/a" if improvement is None else improvement_cell(improvement)
        note = c.reason or ("" if improvement is None else improvement.reason)
        rows.append(
            [c.setting, f"{c.fps:g}", c.task, c.variant, c.metric]
            + [num(c.late_step), num(c.target), num(c.base_steps_to_target)]
            + [num(c.variant_steps_to_target), num(c.speedup), at, note]
        )
    columns = ["setting", "fps", "task", "variant", "measure", "late step", "target"]
    columns += ["baseline steps", "variant steps", "speed-up", "rel. improvement @ step", "note"]
    baseline = summary.settings.baseline
    title = f"Convergence against {baseline} (mean curves over seeds; task 'all' = IQM curve)"
    return Table("convergence", title, columns, rows)


def _estimate_cells(entries: list, quantities: list[str]) -> list[tuple[str, str, list]]:
    """(task, variant, the entry of each quantity or None) for every pair with any entry."""
    found = []
    for task in tasks_of(entries):
        for variant in _ordered(entries, "variant"):
            cells = [_lookup(entries, task=task, variant=variant, quantity=q) for q in quantities]
            if any(cells):
                found.append((task, variant, cells))
    return found


def loss_table(summary: Summary, setting: str, fps: float) -> Table | None:
    """Final validation losses per task and variant."""
    quantities = [f"final/{metric}" for metric in FINAL_LOSSES]
    entries = [e for e in _in(summary.estimates, setting, fps) if e.quantity in quantities]
    if not entries:
        return None
    rows = [
        [task, variant, *(interval(c) if c else "–" for c in cells)]
        + [str(max(c.n_runs for c in cells if c))]
        for task, variant, cells in _estimate_cells(entries, quantities)
    ]
    where = f"{setting}, {summary.settings.frame_rate(fps)}"
    title = f"Final validation loss ({where}): mean over seeds [95% CI]"
    return Table("loss", title, ["task", "variant", *FINAL_LOSSES, "runs"], rows)


def drift_table(summary: Summary, setting: str, fps: float) -> Table | None:
    """Latent MSE at the first and the last horizon, per task, variant and inference mode."""
    entries = [e for e in _in(summary.drift, setting, fps) if e.metric == DRIFT_TABLE_METRIC]
    if not entries:
        return None
    regimes = _ordered(entries, "regime")
    horizon = max(len(e.horizon) for e in entries)
    columns = ["task", "variant", "mode"]
    columns += [f"{regime} h={h}" for regime in regimes for h in (1, horizon)]
    rows = []
    for task in tasks_of(entries):
        for variant in _ordered(entries, "variant"):
            for mode in _ordered(entries, "mode"):
                found = [
                    _lookup(entries, task=task, variant=variant, mode=mode, regime=regime)
                    for regime in regimes
                ]
                if not any(found):
                    continue
                cells = [interval(e, i) if e else "–" for e in found for i in (0, -1)]
                rows.append([task, variant, mode, *cells])
    where = f"{setting}, {summary.settings.frame_rate(fps)}"
    title = f"Drift: {DRIFT_TABLE_METRIC} at horizons 1 and H ({where})"
    return Table("drift", title, columns, rows)


def speed_table(summary: Summary, setting: str, fps: float) -> Table | None:
    """Chunks per second per inference mode and the mcp_parallel speed-up (per run ratio)."""
    quantities = [f"speed/{mode}/chunks_per_second" for mode in SPEED_MODES] + [SPEEDUP]
    entries = [e for e in _in(summary.estimates, setting, fps) if e.quantity in quantities]
    if not entries:
        return None
    rows = [
        [task, variant, *(interval(c) if c else "–" for c in cells)]
        for task, variant, cells in _estimate_cells(entries, quantities)
    ]
    columns = ["task", "variant"] + [f"{mode} chunks/s" for mode in SPEED_MODES]
    columns.append("mcp_parallel speed-up")
    where = f"{setting}, {summary.settings.frame_rate(fps)}"
    title = f"Inference speed ({where}): mean over seeds [95% CI]"
    return Table("speed", title, columns, rows)


DEPTH_COLUMNS = {  # summary.DEPTH_QUANTITIES -> column
    "success/model": "final success",
    SUCCESS_AUC: "area under the success curve",
    f"{SUCCESS_AT}{MATCHED_FLOPS}": "success at the baseline's FLOPs",
    f"{SUCCESS_AUC}{MATCHED_FLOPS}": "area at the baseline's FLOPs",
}


def depth_table(summary: Summary) -> Table | None:
    """The depth curve where the sweep spans three or more MCP depths D (D=0: no heads): final
    success and the area under the success curve (a mean success rate over training), at
    matched steps and at the D=0 baseline's training FLOPs."""
    if not summary.depth:
        return None
    points: dict[tuple, dict[str, Entry]] = {}
    for e in summary.depth:
        points.setdefault((e.setting, e.fps, e.task, e.depth), {})[e.quantity] = e
    rows = []
    for (setting, fps, task, depth), by_quantity in points.items():
        first = next(iter(by_quantity.values()))
        cells = [
            (success_cell(e) if e.successes is not None else interval(e)) if e else "–"
            for e in (by_quantity.get(q) for q in DEPTH_COLUMNS)
        ]
        rows.append([setting, f"{fps:g}", task, str(depth), ", ".join(first.variants), *cells])
    columns = ["setting", "fps", "task", "D", "variants", *DEPTH_COLUMNS.values()]
    title = "The depth curve: closed-loop success per MCP depth, mean over seeds [95% CI]"
    return Table("depth", title, columns, rows)


def provenance_table(summary: Summary) -> Table:
    rows = [
        [c.commit, c.versions, str(c.runs), str(len(c.dirty_runs))]
        for c in summary.provenance.commits
    ]
    columns = ["commit", "versions", "runs", "dirty runs"]
    return Table("provenance", "Git state and library versions of the runs", columns, rows)


def missing_table(summary: Summary) -> Table:
    rows = [[m.path, SCOPES.get(m.scope, "everything"), m.reason] for m in summary.missing]
    return Table("missing", "Runs left out", ["run folder", "left out of", "reason"], rows)


def report_tables(summary: Summary) -> list[Table]:
    """Every table of the report, in section order."""
    tables: list[Table | None] = [provenance_table(summary), missing_table(summary)]
    for builder in (success_table, loss_table, drift_table, speed_table):
        tables += [builder(summary, setting, fps) for setting, fps in slices(summary)]
    tables += [convergence_table(summary), depth_table(summary)]
    return [t for t in tables if t is not None]


# ------------------------------------------------------------------ markdown
SECTIONS = {
    "success": "Closed-loop success",
    "convergence": "Convergence",
    "depth": "MCP depth curve",
    "loss": "Validation loss",
    "drift": "Rollout drift",
    "speed": "Inference speed",
}
EMPTY = {
    "success": "No closed-loop results: no run has an eval.json (see the missing runs).",
    "convergence": "No comparison with the baseline (see the notes).",
    "depth": "No depth curve: no task, setting and fps with runs of three or more MCP depths.",
    "loss": "No validation losses in the runs' metrics.jsonl.",
    "drift": "No drift results: no run has an eval.json (see the missing runs).",
    "speed": "No speed results: no run has an eval.json (see the missing runs).",
}


def _header(summary: Summary, sweep_dir: Path) -> list[str]:
    p = summary.provenance
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        f"Sweep folder: this file's folder (`{sweep_dir.name}/`; run folders are named "
        f"relative to it): {p.runs_used} runs aggregated, "
        f"{p.runs_missing} left out, {p.runs_without_eval} without eval.json. Every "
        f"number below is in `aggregate/summary.json` with the run folders it came from; "
        "per-run values are in `aggregate/*.csv`.",
    ]
    if len(p.commits) > 1:
        lines.append(f"\n**Warning:** the runs come from {len(p.commits)} git commits.")
    if p.any_dirty:
        lines.append("\n**Warning:** some runs were trained from a dirty working tree.")
    return lines


def _method(summary: Summary) -> list[str]:
    s = summary.settings
    late = "the last common evaluation step" if s.late_step is None else f"step {s.late_step:g}"
    return [
        f"- Per (variant, task, setting, fps): mean over seeds with a percentile-bootstrap "
        f"{s.confidence:.0%} interval ({s.bootstrap_reps} replicates, seed "
        f"{s.bootstrap_seed}); success rates with their summed episode counts (per-run "
        "Wilson intervals in `aggregate/success.csv`).",
        "- Across tasks: interquartile mean of all runs with a stratified bootstrap interval "
        "(rliable); losses and drift are not pooled across tasks.",
        f"- Convergence against `{s.baseline}` on mean curves over seeds, linearly "
        "interpolated: relative improvement (v - b) / b; speed-up = steps the baseline needs "
        f"to reach its own value at {late} / steps the variant needs to reach it. Measures: "
        f"`{s.success_metric}` (closed-loop success of periodic checkpoints) and "
        f"`{s.loss_metric}` (lower is better).",
        "- Final success is the final checkpoint's eval.json; the speed-up of mcp_parallel "
        "inference is measured within each evaluation run (one machine), then averaged.",
    ]


def render_report(
    summary: Summary,
    sweep_dir: Path,
    tables: Sequence[Table],
    figures: Sequence[FigureFile],
    claims_table_md: str | None = None,
) -> str:
    """The markdown of ``REPORT.md``."""
    by_section = {t.section: [] for t in tables}
    for table in tables:
        by_section[table.section].append(table)
    lines = _header(summary, sweep_dir)
    if claims_table_md:
        lines += ["", claims_table_md.strip()]
    lines += ["", "## Provenance", "", by_section["provenance"][0].markdown()]
    lines += ["", "## Missing runs", ""]
    lines.append(by_section["missing"][0].markdown() if summary.missing else "None.")
    if summary.notes:
        lines += ["", *(f"- Note: {note}" for note in summary.notes)]
    for section, heading in SECTIONS.items():
        lines += ["", f"## {heading}", ""]
        blocks = [t.markdown() for t in by_section.get(section, [])]
        blocks += [
            f"![{f.caption}]({REPORT_DIR}/{f.path.name})" for f in figures if f.section == section
        ]
        lines.append("\n\n".join(blocks) if blocks else EMPTY[section])
    lines += ["", "## Method", "", *_method(summary), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ wandb
def log_to_wandb(
    sweep_dir: Path,
    summary: Summary,
    tables: Sequence[Table],
    figures: Sequence[FigureFile],
    mode: str,
) -> None:
    """One wandb run with the tables and figures; any wandb error only prints a warning."""
    if mode == "disabled":
        return
    try:
        import wandb

        run = wandb.init(
            project=LoggerConfig.project,
            job_type="report",
            name=f"report-{sweep_dir.name}",
            dir=str(sweep_dir / REPORT_DIR),
            mode=mode,
            config={"sweep": summary.sweep, **summary.settings.to_dict()},
        )
        logged: dict[str, Any] = {
            f"table/{t.section}/{i}": wandb.Table(columns=t.columns, data=t.rows)
            for i, t in enumerate(tables)
        }
        logged |= {f"figure/{f.path.stem}": wandb.Image(str(f.path)) for f in figures}
        run.log(logged)
        run.finish()
    except Exception as exc:  # wandb raises many types; the report is written regardless
        print(
            f"warning: wandb logging failed ({type(exc).__name__}: {exc}); "
            f"{sweep_dir / REPORT_FILE} is complete without it",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ entry points
def write_report(
    sweep_dir: str | Path,
    summary: Summary,
    claims_table_md: str | None = None,
    wandb_mode: str = "disabled",
) -> Path:
    """Write ``<sweep>/REPORT.md`` and its figures under ``<sweep>/report/`` from ``summary``
    (``claims_table_md``, e.g. the paper-claims table, goes at the top); returns the path."""
    if wandb_mode not in WANDB_MODES:
        raise ValueError(f"wandb_mode={wandb_mode!r} is not valid; choose one of: {WANDB_MODES}")
    sweep_dir = Path(sweep_dir)
    folder = sweep_dir / REPORT_DIR
    for old in folder.glob("*.png"):  # figures of slices no longer in the sweep
        old.unlink()
    figures = report_figures(summary, folder)
    tables = report_tables(summary)
    text = render_report(summary, sweep_dir, tables, figures, claims_table_md)
    path = atomic.write_text(sweep_dir / REPORT_FILE, text)
    log_to_wandb(sweep_dir, summary, tables, figures, wandb_mode)
    return path
