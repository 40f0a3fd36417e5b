"""The sweep report: sections, figures, numbers traceable to summary.json, wandb logging."""

import json
import re
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import wandb

from experiments.report import main
from experiments.results.aggregate import aggregate_sweep
from experiments.results.report import EMPTY, REPORT_FILE, SECTIONS, write_report
from tests.run_folder_factory import COMMIT, RunSpec, depth_specs, write_sweep
from tests.wandb_offline import history_rows

REPS = 200
CLAIMS = "| claim | paper | ours |\n| --- | --- | --- |\n| speed-up | 2.3 | see below |"
MAIN_TABLES = [SECTIONS[s] for s in ("success", "convergence", "loss", "drift", "speed")]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two variants x two tasks x two seeds, one dirty run, one unfinished, one unevaluated."""
    sweep = tmp_path_factory.mktemp("sweep")
    specs = [
        RunSpec(
            variant=variant,
            task=task,
            seed=seed,
            success=[0.0, 0.1 * rate, 0.2 * rate, 0.3 * rate, 0.4 * rate + 0.1 * seed],
            final_successes=3 + seed + rate,
            drift_level=0.1 / rate,
            dirty=(variant, task, seed) == ("next_forcing", "press_button", 1),
        )
        for variant, rate in (("single_step", 1), ("next_forcing", 2))
        for task in ("press_button", "handover_block")
        for seed in (0, 1)
    ]
    specs += [RunSpec(seed=2, last_step=200), RunSpec(seed=3, with_eval=False)]
    write_sweep(sweep, specs)
    summary = aggregate_sweep(sweep, bootstrap_reps=REPS)
    write_report(sweep, summary, claims_table_md=CLAIMS)
    return sweep


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_report_has_the_claims_first_then_every_section(sweep):
    text = (sweep / REPORT_FILE).read_text()
    assert text.index(CLAIMS) < text.index("## Provenance")
    expected = ["Provenance", "Missing runs", *SECTIONS.values(), "Method"]
    assert list(sections(text)) == expected


def test_header_states_commits_dirty_runs_and_missing_runs(sweep):
    text = (sweep / REPORT_FILE).read_text()
    part = sections(text)
    versions = "mujoco 3.3.0, python 3.12.3, torch 2.13.0"
    assert f"| {COMMIT} | {versions} | 9 | 1 |" in part["Provenance"]
    assert "dirty working tree" in text.split("## Provenance")[0]
    missing = part["Missing runs"]
    assert "seed=2" in missing and "unfinished" in missing and "| everything |" in missing
    assert "seed=3" in missing and "eval.json is missing" in missing
    header = text.split("## ")[0]  # names folders relative to the report, which moves
    assert str(sweep) not in header and f"(`{sweep.name}/`" in header


def test_every_figure_is_linked_readable_and_not_blank(sweep):
    text = (sweep / REPORT_FILE).read_text()
    linked = re.findall(r"!\[[^\]]*\]\((report/[^)]+\.png)\)", text)
    on_disk = sorted(p.relative_to(sweep).as_posix() for p in (sweep / "report").glob("*.png"))
    assert sorted(linked) == on_disk and len(on_disk) >= 6
    for name in linked:
        image = imageio.imread(sweep / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 10 and (image < 128).mean() > 0.005, name  # lines and text drawn
    part = sections(text)
    for heading in MAIN_TABLES:
        if heading != SECTIONS["convergence"]:
            assert "![" in part[heading], heading


def test_the_depth_curve_has_its_table_and_figure(tmp_path):
    write_sweep(tmp_path, depth_specs({0: (4, 6), 1: (6, 8), 2: (7, 7), 3: (7, 9)}))
    write_report(tmp_path, aggregate_sweep(tmp_path, bootstrap_reps=REPS), claims_table_md=CLAIMS)
    part = sections((tmp_path / REPORT_FILE).read_text())[SECTIONS["depth"]]
    rows = table_bodies(part)
    assert [row.split(" | ")[3] for row in rows] == ["0", "1", "2", "3"]
    assert "0.800 [" in rows[3] and "16/20 episodes" in rows[3]
    assert "the depth curve: final success and the area under the success curve" in part
    assert "(report/depth_curve.png)" in part and "success at the baseline's FLOPs" in part
    image = imageio.imread(tmp_path / "report" / "depth_curve.png")
    assert image.std() > 10 and (image < 128).mean() > 0.005


def summary_numbers(value) -> list[float]:
    """Every number in summary.json (booleans are not numbers here)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in summary_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in summary_numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def table_bodies(markdown: str) -> list[str]:
    """The body rows of every markdown table (each table's header and rule dropped)."""
    blocks = re.findall(r"(?:^\|.*\|\n?)+", markdown, flags=re.MULTILINE)
    return [row for block in blocks for row in block.strip().splitlines()[2:]]


def test_every_number_of_the_main_tables_is_in_summary_json(sweep):
    known = np.array(summary_numbers(json.loads((sweep / "aggregate/summary.json").read_text())))
    part = sections((sweep / REPORT_FILE).read_text())
    checked = 0
    for heading in MAIN_TABLES:
        body = table_bodies(part[heading])
        assert body, heading
        for row in body:
            for token in NUMBER.findall(row):
                decimals = len(token.split(".")[1]) if "." in token else 0
                tolerance = 0.5 * 10.0**-decimals + 1e-9
                assert np.any(np.abs(known - float(token)) <= tolerance), (heading, token, row)
                checked += 1
    assert checked > 200


def test_a_sweep_without_a_usable_run_still_gets_a_report(tmp_path):
    write_sweep(tmp_path, [RunSpec(seed=0, last_step=100)])
    summary = aggregate_sweep(tmp_path, bootstrap_reps=REPS)
    part = sections(write_report(tmp_path, summary).read_text())
    assert "unfinished" in part["Missing runs"]
    for key, heading in SECTIONS.items():
        assert part[heading].strip() == EMPTY[key]


def test_wandb_offline_logs_tables_and_figures(tmp_path, capsys):
    write_sweep(tmp_path, [RunSpec(seed=0)])
    main([str(tmp_path), "--bootstrap-reps", str(REPS), "--wandb", "offline"])
    assert f"wrote {tmp_path / REPORT_FILE}" in capsys.readouterr().out
    deadline = time.monotonic() + 20  # wandb's service writes the run file after finish()
    while not (rows := history_rows(tmp_path / "report")) and time.monotonic() < deadline:
        time.sleep(0.1)
    keys = {key for row in rows for key in row}
    assert any(key.startswith("table/success/") for key in keys)
    assert any(key.startswith("figure/eval_success_rate") for key in keys)


def test_a_wandb_failure_never_breaks_the_report(tmp_path, monkeypatch, capsys):
    write_sweep(tmp_path, [RunSpec(seed=0)])
    summary = aggregate_sweep(tmp_path, bootstrap_reps=REPS)

    def broken(**kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    path = write_report(tmp_path, summary, wandb_mode="online")
    assert path.is_file()
    assert "warning: wandb logging failed (RuntimeError: no network)" in capsys.readouterr().err
