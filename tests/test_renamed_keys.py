"""Runs written before ``model.depth``, ``heads.depths`` and the ``heads.depths.<k>.`` weights
were renamed still load, read and match their reproduction's config."""

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
from worldmodel.training.checkpoint import save_checkpoint


def as_before_the_rename(config: dict) -> dict:
    """A config (run config or checkpoint build) spelled as before 2026-12-04."""
    old = {**config, "model": dict(config["model"]), "heads": dict(config["heads"])}
    old["model"]["depth"] = old["model"].pop("num_blocks")
    old["heads"]["depths"] = old["heads"].pop("mcp_depth")
    return old


def test_a_checkpoint_from_before_the_rename_loads_with_its_weights(tmp_path, one_torch_thread):
    build = RunBuild(
        model=tiny_config(),
        heads=HeadsConfig(kind="mcp", mcp_depth=2),
        tokenizer=TokenizerConfig(),
        cameras=["head"],
        image_size=[32, 32],
        fps=12.5,
        task="press_button",
        setting="clean",
        dataset=str(tmp_path / "press_button_clean.h5"),
        train_episodes=6,
    )
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
