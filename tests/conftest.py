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


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """A tiny press_button dataset (6 episodes, head camera 32x32, 4 evaluation seeds)."""
    from worldmodel.data.collection import CollectionJob, run_collection

    data_dir = tmp_path_factory.mktemp("tiny_data")
    run_collection(
        CollectionJob(
            task="press_button",
            setting="clean",
            episodes=6,
            cameras=("head",),
            image_size=(32, 32),
            data_dir=data_dir,
            eval_episodes=4,
        )
    )
    return data_dir


# Fixtures that train or reproduce before their tests run: every test using one is slow.
SLOW_FIXTURES = {"micro", "trained_run", "state_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` the tests that use a ``SLOW_FIXTURES`` fixture, so ``-m "not slow"``
    (README) leaves them out with the tests marked one by one."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
