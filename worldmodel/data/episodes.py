"""HDF5 episode store: crash-safe part files, one consolidated file per (task, setting).

Glossary: ``T`` control steps per episode at ``control_hz``; observation frames o_0..o_T;
``action[t]`` is applied between o_t and o_{t+1}. At load time frames are taken every
``actions_per_frame = control_hz / fps`` control steps (the fps stride), and the actions
between two kept frames are grouped, so nothing is recorded twice.

Layout (schema version 2): root attrs (``REQUIRED_ROOT_ATTRS`` plus caller extras) and a
group ``episodes/ep_{index:06d}`` per episode with attrs ``EPISODE_ATTRS`` and datasets
``images/<camera>`` (none when collected without cameras: the state track) and
``ARRAY_FIELDS``. ``state`` is the scene state of every observation (``envs/state.py``), its
channels named by the root attr ``state_names``. Version 2 added ``state``.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from worldmodel import atomic
from worldmodel.command_line import override
from worldmodel.timing import fps_stride, kept_frames

SCHEMA_VERSION = 2
SETTINGS = ("clean", "randomized")
COLLECT_COMMAND = "python -m experiments.collect"
REQUIRED_ROOT_ATTRS = (
    "schema_version",
    "task",
    "setting",
    "control_hz",
    "physics_dt",
    "mujoco_version",
    "config",
    "cameras",
    "image_size",
    "state_names",
    "skipped_seeds",
    "eval_seeds",
)
EPISODE_ATTRS = ("seed", "setting", "success", "first_success_step", "length")
ARRAY_FIELDS = ("joint_pos", "joint_vel", "qpos", "qvel", "state", "action")
_ARRAY_DTYPES = {
    "joint_pos": np.float32,
    "joint_vel": np.float32,
    "qpos": np.float64,
    "qvel": np.float64,
    "state": np.float32,
    "action": np.float32,
}
_PART_NAME = re.compile(r"^ep_(\d{6})\.h5$")


# What h5py raises for damaged internals: OSError for data, KeyError for an object header
# that cannot be opened, RuntimeError for a broken group index.
HDF5_DAMAGE = (OSError, KeyError, RuntimeError)


class DatasetError(Exception):
    """A dataset file is missing or unusable; the message is one line: file, problem, fix.

    ``command``, when given, ends the fix: the collect command that makes the file anew. The
    file alone cannot tell all of it (a truncated file has no cameras to read), so a caller
    that knows the run's cameras, image size and episodes puts its own (``with_command``)."""

    def __init__(self, path: Path, problem: str, fix: str, command: str = "") -> None:
        self.path, self.problem, self.fix, self.command = Path(path), problem, fix, command
        super().__init__(" ".join(f"{path}: {problem} - {fix} {command}".split()))

    def with_command(self, command: str) -> DatasetError:
        """The same error whose fix ends with ``command`` (only where it ends with one)."""
        return DatasetError(self.path, self.problem, self.fix, command if self.command else "")


@dataclass
class EpisodeRecord:
    """One episode at the full control rate; arrays are cast to the stored dtypes."""

    seed: int
    setting: str
    images: dict[str, np.ndarray]  # camera -> (T+1, H, W, 3) uint8; may be empty
    joint_pos: np.ndarray  # (T+1, J) float32, gripper normalised
    joint_vel: np.ndarray  # (T+1, J) float32
    qpos: np.ndarray  # (T+1, nq) float64
    qvel: np.ndarray  # (T+1, nv) float64
    state: np.ndarray  # (T+1, S) float32 scene state (envs/state.py)
    action: np.ndarray  # (T, J) float32 commanded joint targets
    success: bool
    first_success_step: int  # -1 if never

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting: expected one of {SETTINGS}, got {self.setting!r}")
        for name in ARRAY_FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=_ARRAY_DTYPES[name]))
        if self.action.ndim != 2 or min(self.action.shape) < 1:
            raise ValueError(f"action: expected shape (T>=1, J>=1), got {self.action.shape}")
        steps, joints = self.action.shape
        expected = {  # name -> (rows, columns); None: any number of columns
            "joint_pos": (steps + 1, joints),
            "joint_vel": (steps + 1, joints),
            "qpos": (steps + 1, None),
            "qvel": (steps + 1, None),
            "state": (steps + 1, None),
        }
        for name, (rows, cols) in expected.items():
            shape = getattr(self, name).shape
            if len(shape) != 2 or shape[0] != rows or cols not in (None, shape[1]):
                want = f"({rows}, {'n' if cols is None else cols})"
                raise ValueError(f"{name}: expected shape {want}, got {shape}")
        self._check_images(steps)
        if not -1 <= self.first_success_step <= steps:
            raise ValueError(
                f"first_success_step: expected -1 or 0..{steps}, got {self.first_success_step}"
            )
        if self.success and self.first_success_step == -1:
            raise ValueError("first_success_step: expected a step in 0..T when success is True")

    def _check_images(self, steps: int) -> None:
        size = None
        self.images = {cam: np.asarray(frames) for cam, frames in self.images.items()}
        for cam, frames in self.images.items():
            if not isinstance(cam, str) or not cam or "/" in cam:
                raise ValueError(f"images: camera names must be non-empty without '/', got {cam!r}")
            if frames.dtype != np.uint8:
                raise ValueError(f"images[{cam!r}]: expected dtype uint8, got {frames.dtype}")
            size = size or frames.shape[1:3]
            expected = (steps + 1, *size, 3)
            if frames.shape != expected:
                raise ValueError(f"images[{cam!r}]: expected shape {expected}, got {frames.shape}")

    @property
    def length(self) -> int:
        """Number of control steps T."""
        return self.action.shape[0]


@dataclass
class StridedEpisode:
    """An episode seen at ``fps``: N+1 frames and the N groups of actions between them."""

    seed: int
    setting: str
    fps: float
    actions_per_frame: int  # s = control_hz / fps
    frame_steps: np.ndarray  # (N+1,) control step of each kept frame: 0, s, 2s, ...
    images: dict[str, np.ndarray]  # camera -> (N+1, H, W, 3) uint8
    joint_pos: np.ndarray  # (N+1, J)
    joint_vel: np.ndarray  # (N+1, J)
    state: np.ndarray  # (N+1, S)
    action: np.ndarray  # (N, s, J): action[n] runs between frame n and frame n+1
    success: bool
    first_success_step: int  # in control steps, -1 if never


def stride_episode(record: EpisodeRecord, *, control_hz: float, fps: float) -> StridedEpisode:
    """Keep frames o_0, o_s, o_2s, ... (full strides only) and group actions per interval."""
    return _strided(
        record.images,
        record.joint_pos,
        record.joint_vel,
        record.state,
        record.action,
        seed=record.seed,
        setting=record.setting,
        success=record.success,
        first_success_step=record.first_success_step,
        control_hz=control_hz,
        fps=fps,
    )


def _strided(
    images: Mapping[str, Any],
    joint_pos: Any,
    joint_vel: Any,
    state: Any,
    action: Any,
    *,
    seed: int,
    setting: str,
    success: bool,
    first_success_step: int,
    control_hz: float,
    fps: float,
) -> StridedEpisode:
    """Shared by numpy arrays and h5py datasets: both slice with a step, reading kept frames."""
    stride = fps_stride(control_hz, fps)
    steps, joints = action.shape
    intervals = steps // stride  # N; a trailing partial stride is dropped
    frames = kept_frames(steps, stride)
    return StridedEpisode(
        seed=seed,
        setting=setting,
        fps=fps,
        actions_per_frame=stride,
        frame_steps=np.arange(intervals + 1) * stride,
        images={cam: np.asarray(data[frames]) for cam, data in images.items()},
        joint_pos=np.asarray(joint_pos[frames]),
        joint_vel=np.asarray(joint_vel[frames]),
        state=np.asarray(state[frames]),
        action=np.asarray(action[: intervals * stride]).reshape(intervals, stride, joints),
        success=success,
        first_success_step=first_success_step,
    )


# ---------------------------------------------------------------- writing


def write_episode_part(
    parts_dir: Path, index: int, record: EpisodeRecord, checksums: bool = True
) -> Path:
    """Write one episode to ``parts_dir/ep_{index:06d}.h5`` atomically (``worldmodel.atomic``);
    ``checksums``: HDF5's fletcher32 filter on every dataset, so damaged bytes fail the read
    (False writes files as before issue 37, for tests and the benchmark)."""
    if index < 0:
        raise ValueError(f"index: expected >= 0, got {index}")
    final = Path(parts_dir) / f"ep_{index:06d}.h5"
    image = io.BytesIO()  # built in memory: a full disk fails the plain write below, with
    with h5py.File(image, "w") as f:  # errno and path, never inside HDF5's cache flush
        _write_record(f.create_group(final.stem), record, checksums)
    return atomic.write_bytes(final, image.getvalue())


def finished_parts(parts_dir: Path) -> dict[int, Path]:
    """Complete part files by episode index, in index order; temporary leftovers are ignored."""
    parts_dir = Path(parts_dir)
    if not parts_dir.is_dir():
        return {}
    found = {}
    for path in parts_dir.iterdir():
        match = _PART_NAME.match(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def remove_parts(parts_dir: Path) -> None:
    """Delete part files and temporary leftovers, then the directory if nothing else is in it."""
    parts_dir = Path(parts_dir)
    if not parts_dir.is_dir():
        return
    for path in parts_dir.iterdir():
        if _PART_NAME.match(path.name) or atomic.is_temp(path):
            path.unlink()
    if not any(parts_dir.iterdir()):
        parts_dir.rmdir()


def consolidate(parts: Sequence[Path], out_path: Path, attrs: Mapping[str, Any]) -> None:
    """Write ``out_path`` from part files in the given order, after the episodes it already has.

    ``attrs`` become the root attributes (replacing existing ones; the caller merges e.g.
    ``skipped_seeds``). Episodes are renumbered ``ep_000000``.. in order. Everything is
    written to a temporary file and renamed (``worldmodel.atomic``), so a kill leaves
    ``out_path`` as it was.
    """
    out_path = Path(out_path)
    root = _root_attrs(attrs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(out_path, [out_path, *parts])
    sources: list[tuple[Path, h5py.Group]] = []  # (file, group whose children are episodes)
    try:
        if out_path.exists():
            old = _open_checked(out_path)
            sources.append((out_path, old["episodes"]))
            for key in ("task", "setting"):
                if old.attrs[key] != root[key]:
                    raise ValueError(
                        f"{out_path}: has {key}={old.attrs[key]!r}, cannot extend it with "
                        f"{key}={root[key]!r}"
                    )
        for part in map(Path, parts):
            sources.append((part, _open_h5(part)["/"]))
        with _atomic_h5(out_path) as dst:
            dst.attrs.update(root)
            _copy_episodes(sources, dst.create_group("episodes"), root)
    finally:
        for _, group in sources:
            group.file.close()


def _check_free_space(out_path: Path, sources: Sequence[Path]) -> None:
    """Raise ENOSPC for ``out_path`` before writing when its folder cannot hold a copy of the
    ``sources`` (HDF5 fails a full disk deep in its cache, with pages of errors)."""
    needed = sum(Path(p).stat().st_size for p in sources if Path(p).is_file())
    free = shutil.disk_usage(out_path.parent).free
    if needed > free:
        mib = f"needs {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free"
        raise OSError(errno.ENOSPC, f"No space left on device ({mib})", str(out_path))


def _copy_episodes(
    sources: list[tuple[Path, h5py.Group]], episodes: h5py.Group, root: Mapping[str, Any]
) -> None:
    """Copy every episode of every source into ``episodes``, renumbered, checking each first."""
    seen: dict[int, Path] = {}
    for path, group in sources:
        try:
            for name in sorted(group):
                _check_episode(path, name, group[name], root)
                seed = int(group[name].attrs["seed"])
                if seed in seen:
                    raise ValueError(f"{path}: {name} repeats seed {seed} already in {seen[seed]}")
                seen[seed] = path
                # h5o copy keeps chunking and compression, without decompressing
                episodes.copy(group[name], f"ep_{len(episodes):06d}")
        except HDF5_DAMAGE as exc:
            raise _recollect(path, f"unreadable HDF5 data ({first_line(exc)})") from exc


def _root_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate caller attrs and add ``schema_version``; arrays get stable dtypes."""
    if "schema_version" in attrs:
        raise ValueError("attrs: schema_version is set by the store, do not pass it")
    missing = [k for k in REQUIRED_ROOT_ATTRS if k != "schema_version" and k not in attrs]
    if missing:
        raise ValueError(f"attrs: missing required keys {missing}")
    root = {"schema_version": SCHEMA_VERSION, **attrs}
    if root["setting"] not in SETTINGS:
        raise ValueError(f"attrs['setting']: expected one of {SETTINGS}, got {root['setting']!r}")
    if not isinstance(root["config"], str):
        raise ValueError("attrs['config']: expected the resolved config as a YAML/JSON string")
    cameras = list(root["cameras"])
    if len(set(cameras)) != len(cameras) or not all(isinstance(c, str) for c in cameras):
        raise ValueError(f"attrs['cameras']: expected unique camera names, got {cameras}")
    root["cameras"] = cameras
    names = list(root["state_names"])
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"attrs['state_names']: expected the state's channel names, got {names}")
    root["state_names"] = names
    root["image_size"] = np.asarray(root["image_size"], dtype=np.int64)
    if root["image_size"].shape != (2,):
        raise ValueError(f"attrs['image_size']: expected (H, W), got {root['image_size']}")
    for key in ("skipped_seeds", "eval_seeds"):
        root[key] = np.asarray(root[key], dtype=np.int64).reshape(-1)
    for key, value in root.items():
        if not isinstance(value, (str, int, float, np.generic, np.ndarray, list, tuple)):
            raise ValueError(f"attrs[{key!r}]: expected str, number or array, got {type(value)}")
    return root


def _write_record(group: h5py.Group, record: EpisodeRecord, checksums: bool) -> None:
    group.attrs.update(
        seed=int(record.seed),
        setting=record.setting,
        success=bool(record.success),
        first_success_step=int(record.first_success_step),
        length=record.length,
    )
    images = group.create_group("images")
    for cam, frames in record.images.items():
        chunks = (1, *frames.shape[1:])  # one frame per chunk
        images.create_dataset(
            cam,
            data=frames,
            chunks=chunks,
            compression="gzip",
            compression_opts=1,
            fletcher32=checksums,
        )
    for name in ARRAY_FIELDS:  # fletcher32 chunks the array (one chunk at these sizes)
        group.create_dataset(name, data=getattr(record, name), fletcher32=checksums)


@contextmanager
def _atomic_h5(final: Path) -> Iterator[h5py.File]:
    """Yield a new HDF5 file that becomes ``final`` when the block succeeds."""
    with atomic.atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        yield f


# ---------------------------------------------------------------- reading


def _recollect(
    path: Path,
    problem: str,
    attrs: Mapping[str, Any] | None = None,
    fix: str = "delete it and re-run",
) -> DatasetError:
    """The error for a file to make anew with the collect command (``_collect_hint``)."""
    return DatasetError(path, problem, fix, _collect_hint(path, attrs))


def _collect_hint(path: Path, attrs: Mapping[str, Any] | None = None) -> str:
    """The collect command for ``<dir>/<task>_<setting>.h5``, guessed from the file name; with
    the file's root ``attrs``, for the same cameras and image size."""
    task, _, setting = path.name.split(".", 1)[0].rpartition("_")
    if not task or setting not in SETTINGS:
        task, setting = "<task>", "<setting>"
    hint = f"{COLLECT_COMMAND} task={task} setting={setting} {override('data_dir', path.parent)}"
    if attrs is not None and "cameras" in attrs and "image_size" in attrs:
        height, width = (int(v) for v in attrs["image_size"])
        cameras = ",".join(str(c) for c in attrs["cameras"])
        hint += f" cameras=[{cameras}] image_size=[{height},{width}]"
    return hint


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (h5py's can run to several)."""
    text = str(exc).strip().strip("'\"")  # KeyError quotes its message
    return text.splitlines()[0] if text else type(exc).__name__


def _open_h5(path: Path) -> h5py.File:
    """Open an existing, finished HDF5 file read-only, or raise DatasetError."""
    if atomic.is_temp(path):
        raise _recollect(path, "is a temporary file of an unfinished write")
    if not path.is_file():
        raise _recollect(path, "file not found", fix="collect it with")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        problem = f"not a readable HDF5 file, truncated or corrupt ({first_line(exc)})"
        raise _recollect(path, problem) from exc


def _open_checked(path: Path) -> h5py.File:
    """Open a consolidated file and validate schema, root attrs and every episode's layout."""
    f = _open_h5(path)
    try:
        version = f.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            problem = (
                "no schema_version attribute"
                if version is None
                else (f"schema version {version}, this code reads {SCHEMA_VERSION}")
            )
            raise _recollect(path, problem, f.attrs, fix="delete it and re-collect with")
        missing = [k for k in REQUIRED_ROOT_ATTRS if k not in f.attrs]
        if missing:
            raise _recollect(path, f"missing root attributes {missing}")
        if not isinstance(f.get("episodes"), h5py.Group):
            raise _recollect(path, "no 'episodes' group")
        root = dict(f.attrs)
        for name in sorted(f["episodes"]):
            _check_episode(path, f"episodes/{name}", f["episodes"][name], root)
    except HDF5_DAMAGE as exc:
        f.close()
        raise _recollect(path, f"unreadable HDF5 metadata ({first_line(exc)})") from exc
    except BaseException:
        f.close()
        raise
    return f


def _dataset_keys(group: h5py.Group) -> list[str]:
    """The episode's datasets: the arrays and every camera's images."""
    return [*ARRAY_FIELDS, *(f"images/{camera}" for camera in group["images"])]


def _check_episode(path: Path, name: str, group: Any, root: Mapping[str, Any]) -> None:
    """Raise DatasetError unless ``group`` holds a complete episode matching the root attrs."""
    cameras = [str(c) for c in root["cameras"]]
    if not isinstance(group, h5py.Group):
        raise _recollect(path, f"{name} is not an episode group", root)
    missing = [k for k in EPISODE_ATTRS if k not in group.attrs]
    keys = [*ARRAY_FIELDS, *(f"images/{c}" for c in cameras)]
    missing += [k for k in keys if not isinstance(group.get(k), h5py.Dataset)]
    if missing:
        raise _recollect(path, f"{name} lacks {', '.join(missing)}", root)
    if sorted(group["images"]) != sorted(cameras):
        got = sorted(group["images"])
        raise _recollect(path, f"{name} has cameras {got}, file declares {cameras}", root)
    if group.attrs["setting"] != root["setting"]:
        problem = f"{name} has setting {group.attrs['setting']!r}, file is {root['setting']!r}"
        raise _recollect(path, problem, root)
    steps = int(group.attrs["length"])
    joints = group["action"].shape[-1]
    expected = {
        "action": (steps, joints),
        "joint_pos": (steps + 1, joints),
        "joint_vel": (steps + 1, joints),
        "qpos": (steps + 1, group["qpos"].shape[-1]),
        "qvel": (steps + 1, group["qvel"].shape[-1]),
        "state": (steps + 1, len(root["state_names"])),
        **{f"images/{c}": (steps + 1, *(int(v) for v in root["image_size"]), 3) for c in cameras},
    }
    for key, shape in expected.items():
        if group[key].shape != shape:
            problem = f"{name}/{key} has shape {group[key].shape}, expected {shape}"
            raise _recollect(path, problem, root)
    for cam in cameras:
        if group["images"][cam].dtype != np.uint8:
            raise _recollect(path, f"{name}/images/{cam} is not uint8", root)


class EpisodeFile:
    """A consolidated (task, setting) file, opened read-only and validated on open."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = _open_checked(self.path)
        self.attrs: dict[str, Any] = dict(self._file.attrs)
        self.cameras: list[str] = [str(c) for c in self.attrs["cameras"]]
        self.state_names: list[str] = [str(c) for c in self.attrs["state_names"]]
        self.image_size: tuple[int, int] = tuple(int(v) for v in self.attrs["image_size"])
        self.control_hz = float(self.attrs["control_hz"])
        self._groups = [self._file["episodes"][n] for n in sorted(self._file["episodes"])]
        self.seeds = np.array([g.attrs["seed"] for g in self._groups], dtype=np.int64)
        self.lengths = np.array([g.attrs["length"] for g in self._groups], dtype=np.int64)

    @property
    def num_episodes(self) -> int:
        return len(self._groups)

    @property
    def checksummed_episodes(self) -> int:
        """Episodes whose every dataset has the fletcher32 checksum (collected since issue 37)."""
        return sum(
            all(group[key].fletcher32 for key in _dataset_keys(group)) for group in self._groups
        )

    def __len__(self) -> int:
        return len(self._groups)

    def episode(self, i: int) -> EpisodeRecord:
        """Episode ``i`` at the full control rate."""
        group = self._groups[i]
        with self._reading(group):
            return EpisodeRecord(
                seed=int(group.attrs["seed"]),
                setting=str(group.attrs["setting"]),
                images={cam: group["images"][cam][()] for cam in self.cameras},
                **{name: self._finite(group, name, group[name][()]) for name in ARRAY_FIELDS},
                success=bool(group.attrs["success"]),
                first_success_step=int(group.attrs["first_success_step"]),
            )

    def episode_at_fps(self, i: int, fps: float) -> StridedEpisode:
        """Episode ``i`` at ``fps``, reading only the kept frames from disk."""
        group = self._groups[i]
        with self._reading(group):
            episode = _strided(
                {cam: group["images"][cam] for cam in self.cameras},
                group["joint_pos"],
                group["joint_vel"],
                group["state"],
                group["action"],
                seed=int(group.attrs["seed"]),
                setting=str(group.attrs["setting"]),
                success=bool(group.attrs["success"]),
                first_success_step=int(group.attrs["first_success_step"]),
                control_hz=self.control_hz,
                fps=fps,
            )
        for name in ("joint_pos", "joint_vel", "state", "action"):
            self._finite(group, name, getattr(episode, name))
        return episode

    def joint_pos_at_fps(self, i: int, fps: float) -> np.ndarray:
        """(N+1, J) joint positions at the kept frames of episode ``i`` (no images read)."""
        return self._frames_at_fps(i, "joint_pos", fps)

    def state_at_fps(self, i: int, fps: float) -> np.ndarray:
        """(N+1, S) scene states at the kept frames of episode ``i`` (no images read)."""
        return self._frames_at_fps(i, "state", fps)

    def _frames_at_fps(self, i: int, name: str, fps: float) -> np.ndarray:
        group = self._groups[i]
        with self._reading(group):
            frames = kept_frames(int(group.attrs["length"]), fps_stride(self.control_hz, fps))
            return self._finite(group, name, group[name][frames])

    def actions_at_fps(self, i: int, fps: float) -> np.ndarray:
        """(N, s, J) actions of episode ``i`` grouped per interval at ``fps`` (no images read)."""
        group = self._groups[i]
        with self._reading(group):
            action = self._finite(group, "action", group["action"][()])
        stride = fps_stride(self.control_hz, fps)
        intervals = len(action) // stride
        return action[: intervals * stride].reshape(intervals, stride, action.shape[1])

    def _finite(self, group: h5py.Group, name: str, values: np.ndarray) -> np.ndarray:
        """``values`` of ``group/name``, refused when damage made them NaN or infinite (files
        written before checksums read damaged bytes without an error)."""
        if not np.isfinite(values).all():
            problem = f"{group.name}/{name} holds non-finite values, corrupt"
            raise _recollect(self.path, problem, self.attrs)
        return values

    @contextmanager
    def _reading(self, group: h5py.Group) -> Iterator[None]:
        try:
            yield
        except HDF5_DAMAGE as exc:
            problem = f"{group.name} has unreadable data, corrupt ({first_line(exc)})"
            raise _recollect(self.path, problem, self.attrs) from exc

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> EpisodeFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
