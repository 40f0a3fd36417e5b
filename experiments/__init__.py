"""Hydra apps and benchmarks. Importing ``envs`` first selects the headless GL backend."""

import sys

from worldmodel.training.stop_signals import stop_while_starting

if sys.argv[:1] == ["-m"]:  # an app started as python -m experiments.<app>: Python sets
    stop_while_starting()  # argv[0] to "-m" while it imports the app's package (this file)

import envs  # noqa: E402, F401  (must run before any module of this package imports mujoco)
