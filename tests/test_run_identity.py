"""What names a run, defined once (``experiments/runs.py``): the keys a resumed run may change
name no folder, so a re-run with other infrastructure settings finds its folder and resumes
there; what changes the model names the folder and the variant."""

from hydra import compose, initialize_config_dir

from experiments.cli import CONF_DIR
from experiments.config.registry import register_configs
from experiments.runs import RESUMABLE_KEYS, RESUME_RULES, covers, run_folder_name, variant_label

COMMAND = ["seed=1", "task=press_button", "train.threads=2", "logger=disabled", "+train.lr=0.1"]
COMMAND += ["experiment=head_variants", "eval.every=5", "data.dir=/data", "heads.mcp_depth=2"]


def test_the_folder_is_the_sorted_overrides_without_the_resumable_ones():
    assert run_folder_name(COMMAND) == "+train.lr=0.1,heads.mcp_depth=2,seed=1,task=press_button"
    assert run_folder_name(["data.dir=/elsewhere", *COMMAND, "train.steps=99"]) == (
        run_folder_name(COMMAND)
    )


def test_the_variant_names_what_changes_the_model_and_nothing_else():
    assert variant_label("next_forcing", COMMAND) == "next_forcing,+train.lr=0.1,heads.mcp_depth=2"
    assert covers(RESUMABLE_KEYS, "logger.init.tags") and not covers(RESUMABLE_KEYS, "loggers")


def test_hydra_names_the_run_folder_through_the_same_function():
    register_configs()
    overrides = ["task=press_button", "seed=1", "train.threads=2", "heads=next_forcing"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.run.dir == "outputs/train/default/heads=next_forcing,seed=1,task=press_button"
    assert cfg.hydra.sweep.subdir == "heads=next_forcing,seed=1,task=press_button"


def test_a_tokenizer_inside_the_data_folder_compares_by_its_place_there():
    def config(root: str, name: str = "x.pt") -> dict:
        return {
            "data": {"dir": f"{root}/data"},
            "tokenizer": {"checkpoint": f"{root}/data/t/{name}"},
        }

    moved = RESUME_RULES.differences(config("/a"), config("/b c"), RESUMABLE_KEYS)
    assert moved == []  # data.dir is resumable; the tokenizer sits at the same place in it
    other = RESUME_RULES.differences(config("/a"), config("/a", "y.pt"), RESUMABLE_KEYS)
    assert other == ["tokenizer.checkpoint"]
    outside = {"data": {"dir": "/a/data"}, "tokenizer": {"checkpoint": "/elsewhere/x.pt"}}
    assert RESUME_RULES.differences(config("/a"), outside, RESUMABLE_KEYS) == [
        "tokenizer.checkpoint"
    ]
