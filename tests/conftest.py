"""Fixtures shared by the test modules."""

import pytest
import torch

import envs  # noqa: F401  (selects the headless GL backend before anything imports mujoco)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads; on shared cores they only slow down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
