"""constraints.txt pins exactly what this environment runs, and leaves torch to its owner."""

import importlib.metadata as metadata

from experiments.pin_versions import CONSTRAINTS_FILE, pinned_names, read_constraints

REGENERATE = "regenerate it with: python -m experiments.pin_versions"


def test_committed_constraints_pin_the_installed_dependency_closure():
    pins = read_constraints(CONSTRAINTS_FILE)
    installed = {name: metadata.version(name) for name in pinned_names()}
    assert set(pins) == set(installed), f"constraints.txt is out of date; {REGENERATE}"
    assert pins == installed, f"this environment differs from constraints.txt; {REGENERATE}"
    assert {"mujoco", "numpy", "gymnasium", "h5py", "hydra-core", "wandb"} <= set(pins)


def test_torch_and_its_own_requirements_are_left_to_the_user():
    pins = read_constraints(CONSTRAINTS_FILE)
    assert not {"torch", "sympy", "networkx", "filelock"} & set(pins)
