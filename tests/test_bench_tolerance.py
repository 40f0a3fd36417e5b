"""The expert tolerance bench on press_button: rows, JSON, determinism, a bias that hurts."""

import json

from experiments.bench.cli import main
from experiments.bench.tolerance import KINDS, run_tolerance_bench


def test_tolerance_bench_rows_and_json(tmp_path, capsys):
    out = tmp_path / "tolerance.json"
    argv = ["tolerance", "--tasks", "press_button", "--episodes", "2", "--magnitudes", "0,0.1"]
    main([*argv, "--out", str(out)])
    table = capsys.readouterr().out
    results = json.loads(out.read_text())["results"]
    assert [(r["kind"], r["magnitude"]) for r in results] == [
        (kind, magnitude) for kind in KINDS for magnitude in (0.0, 0.1)
    ]
    assert all(r["seeds"] == [100000, 100001] for r in results)
    clean = [r for r in results if r["magnitude"] == 0.0]
    assert all(r["successes"] == 2 and r["mean_progress"] == 1.0 for r in clean)
    biased = next(r for r in results if r["kind"] == "bias" and r["magnitude"] == 0.1)
    assert biased["mean_progress"] < 1.0  # 0.1 rad on every joint misses the 16 mm cap
    assert "| press_button | 0 | 2/2 [0.34, 1.00] | 1.00 | 2/2 [0.34, 1.00] | 1.00 |" in table
    assert table.count("| press_button |") == 2

    again = run_tolerance_bench(["press_button"], "clean", [0.0, 0.1], episodes=2)
    assert [r.to_dict() for r in again] == results
