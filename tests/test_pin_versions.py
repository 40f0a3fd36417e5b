"""constraints.txt pins every dependency within pyproject's ranges, and leaves torch to its
owner. Whether it pins the running environment exactly is ``make test``'s check
(``python -m experiments.pin_versions --check``): a scratch environment may differ."""

from packaging.utils import canonicalize_name

from experiments.pin_versions import CONSTRAINTS_FILE, direct_requirements, read_constraints

REGENERATE = "regenerate it with: python -m experiments.pin_versions"


def test_every_direct_dependency_is_pinned_within_its_range():
    pins = read_constraints(CONSTRAINTS_FILE)
    for requirement in direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt does not pin {name}; {REGENERATE}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )
    assert {"mujoco", "numpy", "gymnasium", "h5py", "hydra-core", "wandb"} <= set(pins)


def test_torch_and_its_own_requirements_are_left_to_the_user():
    pins = read_constraints(CONSTRAINTS_FILE)
    assert not {"torch", "sympy", "networkx", "filelock"} & set(pins)
