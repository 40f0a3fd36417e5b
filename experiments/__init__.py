"""Hydra apps and benchmarks. Importing ``envs`` first selects the headless GL backend."""

import envs  # noqa: F401  (must run before any module of this package imports mujoco)
