"""Look at a dataset: ``python -m experiments.inspect data/handover_block_clean.h5``.

Prints a summary and writes a contact sheet (PNG) and a video (mp4) of the first episodes
next to the file (or into ``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.cli import exit_on_user_error
from worldmodel.data.episodes import EpisodeFile
from worldmodel.media import contact_sheet, tile_cameras, upscale, write_image, write_video


def summary(dataset: EpisodeFile) -> str:
    attrs = dataset.attrs
    lengths = dataset.lengths
    lines = [
        f"file           {dataset.path}",
        f"task/setting   {attrs['task']} / {attrs['setting']}",
        f"episodes       {dataset.num_episodes}  (steps: min {lengths.min()}, "
        f"mean {lengths.mean():.0f}, max {lengths.max()}, total {lengths.sum()})",
        f"seeds          {list(map(int, dataset.seeds[:8]))}{' ...' if len(dataset) > 8 else ''}",
        f"skipped seeds  {len(attrs['skipped_seeds'])} (expert failed): "
        f"{list(map(int, attrs['skipped_seeds'][:8]))}",
        f"eval seeds     {len(attrs['eval_seeds'])} "
        f"from {int(min(attrs['eval_seeds'], default=0))}",
        f"cameras        {', '.join(dataset.cameras)} at {dataset.image_size[0]}x"
        f"{dataset.image_size[1]}",
        f"rates          control {dataset.control_hz:g} Hz, physics dt {attrs['physics_dt']:g} s",
        f"versions       schema {attrs['schema_version']}, mujoco {attrs['mujoco_version']}",
        f"checksums      fletcher32 on {dataset.checksummed_episodes} of {len(dataset)} "
        "episodes (re-collect into a new data_dir to add them: README, 'Datasets')",
    ]
    return "\n".join(lines)


def previews(
    dataset: EpisodeFile, out_dir: Path, episodes: int, columns: int = 8
) -> tuple[Path, Path]:
    """Contact sheet (one row per episode, evenly spaced frames) and an mp4 of those episodes."""
    stem = dataset.path.stem
    scale = max(1, 128 // dataset.image_size[0])
    rows, video = [], []
    for index in range(min(episodes, len(dataset))):
        record = dataset.episode(index)
        steps = np.linspace(0, record.length, columns).round().astype(int)
        tiles = [
            tile_cameras({c: record.images[c][t] for c in dataset.cameras})
            for t in range(record.length + 1)
        ]
        rows.append([tiles[t] for t in steps])
        video.extend(upscale(tile, scale) for tile in tiles)
    sheet = write_image(out_dir / f"{stem}_sheet.png", contact_sheet(rows))
    movie = write_video(out_dir / f"{stem}.mp4", video, fps=dataset.control_hz)
    return sheet, movie


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="dataset file written by experiments.collect")
    parser.add_argument("--episodes", type=int, default=4, help="episodes in the previews")
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNG and mp4")
    args = parser.parse_args(argv)
    inspect_dataset(args.path, args.out or args.path.parent, args.episodes)


@exit_on_user_error
def inspect_dataset(path: Path, out_dir: Path, episodes: int) -> None:
    """Print the summary and write the previews; a damaged or missing file, or a folder that
    cannot be written, exits 2 with one line as every app does."""
    with EpisodeFile(path) as dataset:
        print(summary(dataset))
        sheet, movie = previews(dataset, out_dir, episodes)
    print(f"contact sheet  {sheet}\nvideo          {movie}")


if __name__ == "__main__":
    main()
