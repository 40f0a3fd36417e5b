"""Write ``constraints.txt``: the exact versions of this package's dependency closure in the
running environment, which ``make`` and CI install with, while pyproject keeps loose ranges.

torch and its own requirements are left out: torch is pinned by the Makefile's ``TORCH`` and
only installed when missing, so a GPU user's own build (and what it pins) keeps working.

    python -m experiments.pin_versions            # rewrite constraints.txt from this venv
    python -m experiments.pin_versions --check    # exit 1 unless it matches this venv

``make test`` runs the check in the environment it installed from constraints.txt; the tests
check what holds in any environment (every dependency pinned, within pyproject's range).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from worldmodel import atomic

PACKAGE = "worldmodel-bench"
EXTRAS = ("dev", "parallel", "slurm")  # the extras the Makefile installs
UNPINNED_ROOT = "torch"
CONSTRAINTS_FILE = Path(__file__).resolve().parents[1] / "constraints.txt"
HEADER = (
    "# Exact versions CI ran with; `make` and .ci/run install with `-c constraints.txt`.\n"
    "# Regenerate after changing dependencies: python -m experiments.pin_versions\n"
    "# torch and its requirements are left out (the Makefile's TORCH pins torch).\n"
)


def _requirements(dist: str, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The requirements of an installed distribution that apply here with ``extras``."""
    found = []
    for line in metadata.requires(dist) or []:
        requirement = Requirement(line)
        environments = [{"extra": extra} for extra in extras or ("",)]
        if requirement.marker is None or any(requirement.marker.evaluate(e) for e in environments):
            found.append(requirement)
    return found


def dependency_closure(root: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Canonical names of every installed distribution ``root`` (with ``extras``) needs."""
    seen: set[str] = set()
    pending = [(root, extras)]
    while pending:
        dist, dist_extras = pending.pop()
        for requirement in _requirements(dist, dist_extras):
            name = canonicalize_name(requirement.name)
            if name not in seen:
                seen.add(name)
                pending.append((name, tuple(sorted(requirement.extras))))
    return seen


def pinned_names() -> set[str]:
    """The distributions constraints.txt pins: our closure minus torch and torch's own."""
    torch_family = {UNPINNED_ROOT} | dependency_closure(UNPINNED_ROOT)
    return dependency_closure(PACKAGE, EXTRAS) - torch_family


def constraints_text() -> str:
    lines = [f"{name}=={metadata.version(name)}" for name in sorted(pinned_names())]
    return HEADER + "".join(f"{line}\n" for line in lines)


def direct_requirements() -> list[Requirement]:
    """This package's own requirements with the extras the Makefile installs, torch aside
    (pyproject's ranges, as the installed package records them)."""
    requirements = _requirements(PACKAGE, EXTRAS)
    return [r for r in requirements if canonicalize_name(r.name) != UNPINNED_ROOT]


def read_constraints(path: Path = CONSTRAINTS_FILE) -> dict[str, str]:
    """``{canonical name: version}`` of a constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CONSTRAINTS_FILE)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless the file pins this environment"
    )
    args = parser.parse_args(argv)
    if args.check:
        pins = read_constraints(args.out)
        installed = {name: metadata.version(name) for name in pinned_names()}
        changed = sorted(
            f"{name} {pins.get(name, 'unpinned')} -> {installed.get(name, 'not installed')}"
            for name in set(pins) | set(installed)
            if pins.get(name) != installed.get(name)
        )
        if changed:
            print(
                f"error: {args.out} does not pin this environment ({', '.join(changed[:5])}); "
                "regenerate it with: python -m experiments.pin_versions",
                file=sys.stderr,
            )
            sys.exit(1)
        print(f"{args.out} pins this environment ({len(pins)} distributions)")
        return
    atomic.write_text(args.out, constraints_text())
    print(f"wrote {len(pinned_names())} pins to {args.out}")


if __name__ == "__main__":
    main()
