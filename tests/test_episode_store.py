"""Episode store: round trip, crash safety, resume, one-line errors and fps striding."""

import hashlib
import multiprocessing
import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.damage import overwrite_middle_of
from worldmodel import atomic
from worldmodel.data.episodes import (
    SCHEMA_VERSION,
    DatasetError,
    EpisodeFile,
    EpisodeRecord,
    consolidate,
    finished_parts,
    remove_parts,
    stride_episode,
    write_episode_part,
)
from worldmodel.timing import fps_stride

CAMERAS = ["front", "wrist"]
H, W = 8, 8
NQ, NV, J = 9, 8, 14
STATE_NAMES = [f"joint{j}" for j in range(J)] + ["block.x", "block.y", "block.z"]


def make_record(
    seed: int, steps: int, setting: str = "clean", cameras: list[str] = CAMERAS
) -> EpisodeRecord:
    """A synthetic episode; action[t] = t + 0.25 * joint so grouping is checkable by value."""
    rng = np.random.default_rng(seed)
    action = np.arange(steps, dtype=np.float32)[:, None] + 0.25 * np.arange(J, dtype=np.float32)
    return EpisodeRecord(
        seed=seed,
        setting=setting,
        images={c: rng.integers(0, 256, (steps + 1, H, W, 3), dtype=np.uint8) for c in cameras},
        joint_pos=rng.standard_normal((steps + 1, J), dtype=np.float32),
        joint_vel=rng.standard_normal((steps + 1, J), dtype=np.float32),
        qpos=rng.standard_normal((steps + 1, NQ)),
        qvel=rng.standard_normal((steps + 1, NV)),
        state=rng.standard_normal((steps + 1, len(STATE_NAMES)), dtype=np.float32),
        action=action,
        success=seed % 2 == 0,
        first_success_step=steps // 2 if seed % 2 == 0 else -1,
    )


def root_attrs(**overrides: object) -> dict:
    attrs = {
        "task": "handover_block",
        "setting": "clean",
        "control_hz": 50,
        "physics_dt": 0.002,
        "mujoco_version": "3.2.0",
        "config": '{"task": "handover_block"}',
        "cameras": CAMERAS,
        "image_size": (H, W),
        "state_names": STATE_NAMES,
        "skipped_seeds": [4],
        "eval_seeds": [100, 101],
        "git_commit": "abc123",
    }
    return {**attrs, **overrides}


def write_dataset(path: Path, records: list[EpisodeRecord], **attrs: object) -> None:
    parts_dir = path.parent / f"{path.stem}_parts"
    for i, record in enumerate(records):
        write_episode_part(parts_dir, i, record)
    consolidate(list(finished_parts(parts_dir).values()), path, root_attrs(**attrs))
    remove_parts(parts_dir)


def assert_same_record(got: EpisodeRecord, want: EpisodeRecord) -> None:
    assert (got.seed, got.setting, got.success, got.first_success_step) == (
        want.seed,
        want.setting,
        want.success,
        want.first_success_step,
    )
    assert list(got.images) == list(want.images)
    for cam in want.images:
        np.testing.assert_array_equal(got.images[cam], want.images[cam])
        assert got.images[cam].dtype == np.uint8
    for name in ("joint_pos", "joint_vel", "qpos", "qvel", "state", "action"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert getattr(got, name).dtype == getattr(want, name).dtype


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    records = [make_record(seed, steps) for seed, steps in [(0, 5), (1, 9), (2, 3)]]
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, records)

    with EpisodeFile(out) as ds:
        assert len(ds) == ds.num_episodes == 3
        assert ds.cameras == CAMERAS
        assert ds.image_size == (H, W)
        assert ds.control_hz == 50
        np.testing.assert_array_equal(ds.seeds, [0, 1, 2])
        np.testing.assert_array_equal(ds.lengths, [5, 9, 3])
        assert ds.attrs["schema_version"] == SCHEMA_VERSION
        assert ds.attrs["task"] == "handover_block"
        assert ds.attrs["physics_dt"] == 0.002
        assert ds.attrs["git_commit"] == "abc123"
        assert ds.attrs["config"] == '{"task": "handover_block"}'
        np.testing.assert_array_equal(ds.attrs["skipped_seeds"], [4])
        np.testing.assert_array_equal(ds.attrs["eval_seeds"], [100, 101])
        for i, want in enumerate(records):
            assert_same_record(ds.episode(i), want)

    with h5py.File(out, "r") as f:
        assert sorted(f["episodes"]) == ["ep_000000", "ep_000001", "ep_000002"]
        images = f["episodes/ep_000001/images/front"]
        assert images.chunks == (1, H, W, 3)
        assert images.compression == "gzip"
        assert images.compression_opts == 1
        assert f["episodes/ep_000001"].attrs["length"] == 9
    assert not (tmp_path / "handover_block_clean_parts").exists()
    assert not [p for p in tmp_path.iterdir() if atomic.is_temp(p)]


def test_finished_parts_ignores_tmp_and_consolidate_appends(tmp_path: Path) -> None:
    out = tmp_path / "handover_block_clean.h5"
    old = [make_record(10, 4), make_record(11, 6)]
    write_dataset(out, old)

    parts_dir = tmp_path / "parts"
    new = [make_record(12, 5), make_record(13, 7)]
    write_episode_part(parts_dir, 3, new[1])
    write_episode_part(parts_dir, 2, new[0])
    atomic.temp_path(parts_dir / "ep_000004.h5").write_bytes(b"half-written episode")
    parts = finished_parts(parts_dir)
    assert list(parts) == [2, 3]
    assert parts[2].name == "ep_000002.h5"

    consolidate(list(parts.values()), out, root_attrs())
    with EpisodeFile(out) as ds:
        np.testing.assert_array_equal(ds.seeds, [10, 11, 12, 13])
        for i, want in enumerate(old + new):
            assert_same_record(ds.episode(i), want)

    remove_parts(parts_dir)
    assert not parts_dir.exists()
    assert finished_parts(parts_dir) == {}


def test_consolidate_rejects_duplicate_seed_and_other_task(tmp_path: Path) -> None:
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(1, 4)])
    before = digest(out)
    part = write_episode_part(tmp_path / "parts", 0, make_record(1, 4))
    with pytest.raises(ValueError, match="repeats seed 1"):
        consolidate([part], out, root_attrs())
    with pytest.raises(ValueError, match="cannot extend"):
        consolidate([], out, root_attrs(task="stack_blocks"))
    assert digest(out) == before


def _part_without_joint_vel(path: Path) -> None:
    write_episode_part(path.parent, 2, make_record(2, 5))
    with h5py.File(path, "r+") as f:
        del f["ep_000002/joint_vel"]


def _part_of_garbage(path: Path) -> None:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)


@pytest.mark.parametrize("break_part", [_part_without_joint_vel, _part_of_garbage])
def test_failed_consolidation_keeps_previous_file(tmp_path: Path, break_part) -> None:
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(0, 4)])
    before = digest(out)

    parts_dir = tmp_path / "parts"
    good = write_episode_part(parts_dir, 1, make_record(1, 5))
    bad = parts_dir / "ep_000002.h5"
    break_part(bad)
    with pytest.raises(DatasetError, match="ep_000002"):
        consolidate([good, bad], out, root_attrs())  # fails after copying the good part

    assert digest(out) == before
    assert not [p for p in tmp_path.iterdir() if atomic.is_temp(p)]
    with EpisodeFile(out) as ds:
        np.testing.assert_array_equal(ds.seeds, [0])


def _consolidate_then_die(parts: list[Path], out: Path) -> None:
    """Child process: SIGKILL itself after the first episode is copied into the tmp file."""
    copy = h5py.Group.copy

    def copy_then_kill(self: h5py.Group, *args: object, **kwargs: object) -> None:
        copy(self, *args, **kwargs)
        self.file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    h5py.Group.copy = copy_then_kill
    consolidate(parts, out, root_attrs())


def test_sigkill_during_consolidation_keeps_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(0, 4)])
    before = digest(out)
    parts = [write_episode_part(tmp_path / "parts", 1, make_record(1, 5))]

    child = multiprocessing.get_context("fork").Process(
        target=_consolidate_then_die, args=(parts, out)
    )
    child.start()
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    (tmp,) = [p for p in tmp_path.iterdir() if atomic.is_temp(p)]  # left by the kill, never read
    assert digest(out) == before
    with EpisodeFile(out) as ds:
        np.testing.assert_array_equal(ds.seeds, [0])
    with pytest.raises(DatasetError, match="temporary file"):
        EpisodeFile(tmp)

    consolidate(parts, out, root_attrs())  # a re-run writes its own temporary file
    with EpisodeFile(out) as ds:
        np.testing.assert_array_equal(ds.seeds, [0, 1])
    assert tmp.exists()  # what the collection removes under the dataset's lock
    assert atomic.remove_stale_temps(tmp_path, stem="other_dataset") == []
    assert atomic.remove_stale_temps(tmp_path, stem=out.stem) == [tmp] and not tmp.exists()


def _break_schema(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1


def _drop_dataset(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["episodes/ep_000001/joint_vel"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an hdf5 file\n" * 100)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (Path.unlink, "file not found"),
        (_truncate, "not a readable HDF5 file"),
        (_garbage, "not a readable HDF5 file"),
        (_break_schema, f"schema version {SCHEMA_VERSION + 1}, this code reads {SCHEMA_VERSION}"),
        (_drop_dataset, "episodes/ep_000001 lacks joint_vel"),
    ],
)
def test_unusable_files_raise_one_line_errors(tmp_path: Path, damage, expected: str) -> None:
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(0, 4), make_record(1, 6)])
    damage(out)
    with pytest.raises(DatasetError) as info:
        EpisodeFile(out)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{out}: ")
    assert expected in message
    assert "python -m experiments.collect task=handover_block setting=clean" in message


def _object_address(path: Path, name: str) -> int:
    with h5py.File(path, "r") as f:
        return h5py.h5o.get_info(f[name].id).addr


@pytest.mark.parametrize("name", ["episodes/ep_000001", "episodes/ep_000001/action"])
def test_damaged_internals_raise_one_line_errors(tmp_path: Path, name: str) -> None:
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(0, 4), make_record(1, 6)])
    address = _object_address(out, name)
    with open(out, "r+b") as f:  # garbage over the object's header, as a bad sector leaves
        f.seek(address)
        f.write(np.random.default_rng(0).bytes(64))
    with pytest.raises(DatasetError) as info:
        with EpisodeFile(out) as episodes:
            for i in range(episodes.num_episodes):
                episodes.episode(i)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{out}: ")
    assert "delete it and re-run python -m experiments.collect task=handover_block" in message


def test_stride_episode_hand_computed() -> None:
    record = make_record(0, 10)  # T = 10: frames o_0..o_10, actions a_0..a_9

    half = stride_episode(record, control_hz=50, fps=25)
    assert half.actions_per_frame == 2
    np.testing.assert_array_equal(half.frame_steps, [0, 2, 4, 6, 8, 10])
    np.testing.assert_array_equal(half.images["front"], record.images["front"][[0, 2, 4, 6, 8, 10]])
    np.testing.assert_array_equal(half.joint_pos, record.joint_pos[[0, 2, 4, 6, 8, 10]])
    assert half.action.shape == (5, 2, J)
    np.testing.assert_array_equal(half.action[:, :, 0], [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])

    quarter = stride_episode(record, control_hz=50, fps=12.5)
    assert quarter.actions_per_frame == 4
    np.testing.assert_array_equal(quarter.frame_steps, [0, 4, 8])  # o_10 is in a partial stride
    np.testing.assert_array_equal(quarter.joint_vel, record.joint_vel[[0, 4, 8]])
    assert quarter.images["wrist"].shape == (3, H, W, 3)
    assert quarter.action.shape == (2, 4, J)
    np.testing.assert_array_equal(quarter.action[:, :, 0], [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(quarter.action[1, 2], record.action[6])

    assert fps_stride(50, 50 / 3) == 3
    with pytest.raises(ValueError, match="fps=30.*e.g. 50, 25, 12.5, 10, 5"):
        stride_episode(record, control_hz=50, fps=30)
    with pytest.raises(ValueError, match="fps=0"):
        fps_stride(50, 0)


def test_episode_at_fps_matches_stride_episode(tmp_path: Path) -> None:
    record = make_record(0, 10)
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [record])
    with EpisodeFile(out) as ds:
        for fps in (50, 25, 12.5, 5):
            got, want = ds.episode_at_fps(0, fps), stride_episode(record, control_hz=50, fps=fps)
            np.testing.assert_array_equal(got.frame_steps, want.frame_steps)
            np.testing.assert_array_equal(got.images["front"], want.images["front"])
            np.testing.assert_array_equal(got.joint_pos, want.joint_pos)
            np.testing.assert_array_equal(got.action, want.action)
        assert ds.episode_at_fps(0, 2.5).action.shape == (0, 20, J)  # T=10 < one stride


def test_record_validation_names_field_and_shapes() -> None:
    record = make_record(0, 5)
    with pytest.raises(ValueError, match=r"joint_vel: expected shape \(6, 14\), got \(5, 14\)"):
        EpisodeRecord(**{**vars(record), "joint_vel": record.joint_vel[:5]})
    bad_images = {"front": record.images["front"][:4], "wrist": record.images["wrist"]}
    with pytest.raises(ValueError, match=r"images\['front'\]: expected shape \(6, 8, 8, 3\)"):
        EpisodeRecord(**{**vars(record), "images": bad_images})
    with pytest.raises(ValueError, match="images\\['front'\\]: expected dtype uint8"):
        EpisodeRecord(**{**vars(record), "images": {"front": np.zeros((6, H, W, 3))}})
    with pytest.raises(ValueError, match="setting"):
        EpisodeRecord(**{**vars(record), "setting": "noisy"})


def test_camera_less_dataset_round_trips_states(tmp_path: Path) -> None:
    """The state track's datasets have no images: states are read back at any fps."""
    records = [make_record(seed, 8, cameras=[]) for seed in (0, 1)]
    out = tmp_path / "press_button_clean.h5"
    write_dataset(out, records, cameras=[])
    with EpisodeFile(out) as ds:
        assert ds.cameras == []
        assert ds.state_names == STATE_NAMES
        for i, record in enumerate(records):
            assert_same_record(ds.episode(i), record)
            np.testing.assert_array_equal(ds.state_at_fps(i, 12.5), record.state[[0, 4, 8]])
            assert ds.episode_at_fps(i, 25).images == {}


def test_an_older_schema_names_the_exact_recollect_command(tmp_path: Path) -> None:
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(0, 4)])
    with h5py.File(out, "r+") as f:
        f.attrs["schema_version"] = 1
    with pytest.raises(DatasetError) as info:
        EpisodeFile(out)
    assert str(info.value) == (
        f"{out}: schema version 1, this code reads {SCHEMA_VERSION} - delete it and re-collect "
        f"with python -m experiments.collect task=handover_block setting=clean "
        f"data_dir={tmp_path} cameras=[front,wrist] image_size=[8,8]"
    )


@pytest.mark.parametrize("dataset", ["state", "action", "qpos", "images/front"])
def test_damaged_bytes_fail_the_checksum_with_the_file_and_the_episode(tmp_path, dataset):
    out = tmp_path / "handover_block_clean.h5"
    write_dataset(out, [make_record(0, 4), make_record(1, 60)])
    overwrite_middle_of(out, f"episodes/ep_000001/{dataset}", length=16)
    with EpisodeFile(out) as episodes:
        assert episodes.checksummed_episodes == 2
        episodes.episode(0)  # the other episode reads as written
        with pytest.raises(DatasetError) as info:
            episodes.episode(1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{out}: /episodes/ep_000001 has unreadable data, corrupt")
    assert message.endswith(
        f"delete it and re-run python -m experiments.collect task=handover_block "
        f"setting=clean data_dir={tmp_path} cameras=[front,wrist] image_size=[8,8]"
    )


def write_unchecked(path: Path, records: list[EpisodeRecord]) -> None:
    """A dataset as collected before checksums (same schema, no fletcher32)."""
    parts_dir = path.parent / f"{path.stem}_parts"
    for i, record in enumerate(records):
        write_episode_part(parts_dir, i, record, checksums=False)
    consolidate(list(finished_parts(parts_dir).values()), path, root_attrs())
    remove_parts(parts_dir)


def test_files_without_checksums_still_load_and_nan_damage_is_refused(tmp_path):
    out = tmp_path / "handover_block_clean.h5"
    records = [make_record(0, 4), make_record(1, 60)]
    write_unchecked(out, records)
    with EpisodeFile(out) as episodes:
        assert episodes.checksummed_episodes == 0
        for i, record in enumerate(records):
            assert_same_record(episodes.episode(i), record)
    overwrite_middle_of(out, "episodes/ep_000001/state", length=512, fill=b"\xff")  # NaNs
    with EpisodeFile(out) as episodes, pytest.raises(DatasetError) as info:
        episodes.state_at_fps(1, 12.5)
    assert str(info.value).startswith(
        f"{out}: /episodes/ep_000001/state holds non-finite values, corrupt - delete it and re-run"
    )


def test_inspect_exits_2_with_one_line_like_every_app(tmp_path):
    """A missing dataset: ``error: ...`` on one line and exit status 2 (it was 1)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "experiments.inspect", str(tmp_path / "none.h5")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert f"{tmp_path / 'none.h5'}: file not found" in result.stderr
