"""A non-editable install works: the wheel carries conf/, and the library and the apps find
their presets and Hydra configs from the installed copy, away from the checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "conf", "envs", "experiments", "worldmodel")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed (no dependencies) into a folder of its own, from a wheel built
    on a copy of the sources (a build leaves its build/ folder beside them)."""
    root = tmp_path_factory.mktemp("install")
    source, wheel_dir, target = root / "source", root / "wheel", root / "site"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    build = [*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheel_dir)]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> str:
    env = os.environ | {"PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.mark.slow
def test_the_installed_package_reads_its_own_presets_and_configs(installed, tmp_path):
    code = (
        "import conf, experiments, worldmodel\n"
        "from worldmodel.model.config import model_preset\n"
        "from worldmodel.heads.config import heads_preset\n"
        "from experiments.config.reproduce import scale_preset\n"
        "print(conf.CONF_DIR, experiments.__file__, worldmodel.__file__)\n"
        "print(model_preset('tiny')['dim'], heads_preset('next_forcing').mcp_depth,"
        " scale_preset('next_forcing', 'tiny').steps)\n"
    )
    paths, values = run_installed(installed, tmp_path, "-c", code).splitlines()
    assert all(path.startswith(str(installed)) for path in paths.split())
    assert values.split() == ["64", "3", "1200"]
    composed = run_installed(installed, tmp_path, "-m", "experiments.train", "--cfg", "job")
    assert "heads:" in composed and "task:" in composed
