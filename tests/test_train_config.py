"""The train app's config tree: every option composes and validates; bad input is one line."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.cli import CONF_DIR, check_overrides
from experiments.config.base import ConfigError
from experiments.config.train import TrainConfig
from experiments.runs import RESUMABLE_KEYS
from experiments.train import train_config_from
from worldmodel.command_line import override
from worldmodel.presets import PRESETS_DIR
from worldmodel.training.resume import config_differences

GROUPS = (
    "task",
    "data",
    "tokenizer",
    "model",
    "heads",
    "train",
    "eval",
    "logger",
    "experiment",
    "ablation",
)


def compose_train(*overrides: str) -> TrainConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return train_config_from(compose("train", overrides=list(overrides)))


def group_folder(group: str) -> Path:
    """Where a group's options live: conf/, or the library's presets (model and heads)."""
    return PRESETS_DIR / group if (PRESETS_DIR / group).is_dir() else CONF_DIR / group


def group_options() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted(group_folder(g).glob("*.yaml"))]


def test_every_group_has_options():
    found = {group for group, _ in group_options()}
    assert found == set(GROUPS)


# options that only make sense together: the state track's data and tokenizer
PARTNERS = {("data", "state"): ["tokenizer=state"], ("tokenizer", "state"): ["data=state"]}


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_group_option_composes_and_validates(group, option):
    config = compose_train(f"{group}={option}", *PARTNERS.get((group, option), []))
    assert isinstance(config, TrainConfig)
    if group == "task":
        assert config.task.name == option
    if group == "model":
        assert config.model.dim > 0 and config.model.num_blocks > 0


def test_camera_less_data_needs_the_state_tokenizer():
    with pytest.raises(ConfigError, match=r"data.cameras=\[\] leaves tokenizer=patch no images"):
        compose_train("data=state")


def test_defaults_and_overrides_reach_the_dataclasses():
    config = compose_train("heads=next_forcing", "model=small", "fps=50", "seed=3")
    assert config.heads.kind == "mcp" and config.heads.mcp_depth == 3
    assert (config.model.dim, config.model.num_blocks) == (256, 6)
    assert config.fps == 50.0 and config.seed == 3
    assert config.logger.mode == "offline"


BAD = [
    (["model.dimm=3"], "model.dimm is not a config key"),
    (["model.depth=6"], "model.depth was renamed on 2026-12-04: use model.num_blocks instead"),
    (["heads.depths=1,2"], "heads.depths was renamed on 2026-12-04: use heads.mcp_depth"),
    (["heads=foo"], "heads=foo is not valid; choose one of: chain_last_layer"),
    (["model.dim=abc"], "model.dim"),
    (["fps=7"], "fps=7: control_hz / fps must be a positive integer"),
    (["seed=-1"], "seed=-1 is not valid; must be >= 0"),
    (["+train.stpes=5"], "+train.stpes=5: train.stpes is not a config key of TrainLoopConfig"),
    (["++train.stpes=5"], "++train.stpes=5: train.stpes is not a config key of TrainLoopConfig"),
    (["+foo=1"], "+foo=1: foo is not a config key of TrainConfig; check the spelling"),
    (
        ["data.dir=/d ü"],
        """data.dir=/d ü: Hydra cannot read this value unquoted; pass it as 'data.dir="/d ü"'""",
    ),
    (["task.name=nope"], "task.name='nope' is not valid; choose one of"),
    (["task=nope"], "task=nope is not valid; choose one of: handover_block"),
    (["train.lr=-1"], "train.lr=-1.0 is not valid"),
    (["model.dim=63"], "model: dim=63 is not valid"),
    (["data.window_frames=1"], "model.K=2 is larger than the window data.window_frames=1"),
    (["heads=next_forcing", "data.window_frames=4"], "heads.mcp_depth=3 needs windows"),
    (["eval.mode=mcp_parallel"], "eval.mode=mcp_parallel needs MCP heads"),
    (
        ["eval.context_chunks=4"],  # windows of 8 frames at K=2 hold 4 chunks, 1 of them new
        "eval.context_chunks=4 is more context than training saw: windows held 4 chunks",
    ),
    (["model.latent_dim=16"], "model.latent_dim=16 is derived from the tokenizer, not set"),
    (["model.actions_per_frame=2"], "actions_per_frame=2 is derived from fps, frames_per_latent"),
    (["model.action_space=joint"], "action_space='joint' is not valid"),
    (["data.cameras=[top]"], "data.cameras='top' is not valid"),
    (["logger.mode=cloud"], "logger.mode='cloud' is not valid"),
    (["seed=0,x"], "seed"),  # a sweep is checked value by value
    (["bogus=1"], "bogus is not a config key of TrainConfig"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD)
def test_bad_config_gives_one_line_error(overrides, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_overrides("train", overrides, train_config_from)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert expected in err


def test_a_sweep_is_checked_value_by_value(capsys):
    good = ["-m", "heads=single_step,next_forcing", "seed=0,1"]
    assert check_overrides("train", good, train_config_from) is None
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as stop:
        check_overrides("train", [*good, "fps=12.5,13"], train_config_from)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "13" in err


def test_cli_rejects_bad_key_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", "model.dimm=3", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: model.dimm is not a config key of ModelConfig; check the spelling (its keys "
        "are documented in the ModelConfig dataclass)"
    ]
    assert not run_dir.exists()


def test_resume_refuses_a_different_config():
    old = {"model": {"dim": 64}, "train": {"steps": 10, "lr": 1e-3}, "logger": {"mode": "x"}}
    new = {"model": {"dim": 32}, "train": {"steps": 20, "lr": 1e-3}, "logger": {"mode": "y"}}
    assert config_differences(old, new, RESUMABLE_KEYS) == ["model.dim"]


def test_a_config_error_reaches_callers_as_a_value_error():
    with pytest.raises(ValueError, match="blocks_per_depth=5 is not valid") as error:
        compose_train("heads=next_forcing", "heads.blocks_per_depth=5")
    assert isinstance(error.value, ConfigError)


@pytest.mark.parametrize(
    "value",
    [
        "/runs/a",
        "/my runs/a",
        "/out/data=tiny,task=press_button/step_0000002.pt",
        'x"y\\z',
        'a\\"b\\',
        "/tmp/rep sp ü/runs",  # non-ASCII: Hydra's lexer refuses it unquoted
        "/tmp/müller",
    ],
)
def test_a_pasted_override_is_one_shell_word_that_hydra_reads_back(value):
    words = shlex.split(override("resume_from", value))
    assert len(words) == 1
    parsed = OverridesParser.create().parse_override(words[0])
    assert parsed.key_or_group == "resume_from" and parsed.value() == value


def test_the_readme_passes_wandb_init_arguments_as_written():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=['+logger.init.notes="lr sweep"'])
    assert train_config_from(cfg).logger.init == {"notes": "lr sweep"}
    assert '`+logger.init.notes="lr sweep"`' in (CONF_DIR.parent / "README.md").read_text()
