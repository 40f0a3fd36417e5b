"""Runs written before ``model.depth``, ``heads.depths`` and the ``heads.depths.<k>.`` weights
were renamed, and before ``fps`` took the paper's units and MCP the reference's scheme
(2026-12-07), still load, read and match their reproduction's config."""

from pathlib import Path

import pytest
import torch
import yaml

from experiments.reproduce import check_same_run
from experiments.results.run_folders import read_run, read_run_config
from tests.run_folder_factory import RunSpec, write_run
from tests.tiny_models import tiny_config
from worldmodel.heads.config import HeadsConfig
from worldmodel.tokenizer.factory import TokenizerConfig
from worldmodel.training.build import RunBuild, load_trained
from worldmodel.training.checkpoint import load_checkpoint, save_checkpoint


def as_before_the_rename(config: dict) -> dict:
    """A config (run config or checkpoint build) spelled as before 2026-12-04."""
    old = {**config, "model": dict(config["model"]), "heads": dict(config["heads"])}
    old["model"]["depth"] = old["model"].pop("num_blocks")
    old["heads"]["depths"] = old["heads"].pop("mcp_depth")
    return old


def tiny_build(tmp_path: Path, model, heads: HeadsConfig, frames_per_latent: int = 4) -> RunBuild:
    return RunBuild(
        model=model,
        heads=heads,
        tokenizer=TokenizerConfig(),
        cameras=["head"],
        image_size=[32, 32],
        fps=12.5,
        task="press_button",
        setting="clean",
        dataset=str(tmp_path / "press_button_clean.h5"),
        train_episodes=6,
        frames_per_latent=frames_per_latent,
    )


def test_a_checkpoint_from_before_the_rename_loads_with_its_weights(tmp_path, one_torch_thread):
    build = tiny_build(tmp_path, tiny_config(), HeadsConfig(kind="mcp", mcp_depth=2))
    torch.manual_seed(0)
    model = build.make_model()
    state = model.state_dict()
    old_state = {k.replace("heads.depth_modules.", "heads.depths.", 1): v for k, v in state.items()}
    assert sum(k.startswith("heads.depths.") for k in old_state) > 0  # the MCP modules' weights
    old_build = as_before_the_rename(build.to_dict())
    path = save_checkpoint(
        tmp_path / "old.pt",
        {"build": old_build, "config": old_build, "model": old_state, "step": 7},
    )

    trained = load_trained(path)

    assert trained.build == build and trained.step == 7
    assert trained.model.heads is not None and len(trained.model.heads.depth_modules) == 2
    loaded = trained.model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert trained.checkpoint["config"]["heads"]["mcp_depth"] == 2
    assert "depths" not in trained.checkpoint["config"]["heads"]


@pytest.mark.parametrize("mcp_depth", [0, 3])
def test_a_run_folder_from_before_the_rename_reads_and_matches_its_config(tmp_path, mcp_depth):
    variant = "single_step" if mcp_depth == 0 else "next_forcing"
    folder = write_run(tmp_path, RunSpec(variant=variant, mcp_depth=mcp_depth))
    today = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump(as_before_the_rename(today)))

    assert read_run(folder).mcp_depth == mcp_depth
    assert read_run_config(folder) == today
    check_same_run(Path(folder), today)  # a reproduction re-run finds the run already done


def as_before_the_paper_units(config: dict) -> dict:
    """A config spelled as before 2026-12-07: fps the latent rate, no frames_per_latent, and
    no keys of the reference's loss weights, history levels, MCP positions and fusion."""
    old = {**config, "model": dict(config["model"]), "heads": dict(config["heads"])}
    del old["frames_per_latent"]
    for key in ("loss_weighting", "noisy_history_shift"):
        old["model"].pop(key)
    old["model"]["noisy_history_max_sigma"] = old["model"].pop("noisy_history_max_u")
    for key in ("target_positions", "fusion_spread"):
        old["heads"].pop(key)
    return old


def test_a_run_from_before_the_paper_units_reads_with_what_it_trained_with(tmp_path):
    folder = write_run(tmp_path, RunSpec(variant="next_forcing", fps=12.5))
    today = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump(as_before_the_paper_units(today)))

    config = read_run_config(folder)
    assert config["fps"] == 12.5 and config["frames_per_latent"] == 1  # 4 actions per frame
    assert read_run(folder).frame_rate.actions_per_latent_frame == 4
    assert config["model"]["loss_weighting"] == "bell"
    assert config["model"]["noisy_history_shift"] == 1.0  # U(0, max): the old levels
    assert config["model"]["noisy_history_max_u"] == today["model"]["noisy_history_max_u"]
    assert config["heads"]["target_positions"] is False
    assert config["heads"]["fusion_spread"] == "even"


def test_a_checkpoint_from_before_the_paper_units_rebuilds_the_model_it_was(tmp_path):
    build = tiny_build(
        tmp_path,
        tiny_config(loss_weighting="bell", noisy_history_max_u=0.1, noisy_history_shift=1.0),
        HeadsConfig(kind="mcp", mcp_depth=2, target_positions=False, fusion_spread="even"),
        frames_per_latent=1,
    )
    old = as_before_the_paper_units({**build.to_dict(), "frames_per_latent": 1})
    path = save_checkpoint(tmp_path / "old.pt", {"build": old, "config": old, "step": 3})

    assert load_checkpoint(path)["build"] == build.to_dict()
    assert RunBuild.from_dict(load_checkpoint(path)["build"]).frame_rate.latent_fps == 12.5
