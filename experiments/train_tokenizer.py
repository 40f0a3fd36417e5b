"""CLI: ``python -m experiments.train_tokenizer --data data/x.h5 --out tok.pt``.

Trains a ``conv_ae`` tokenizer (``worldmodel.tokenizer.training.train_conv_ae``) and prints
its held-out PSNR next to the mean-frame baseline. Cameras and image size default to the
first dataset's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worldmodel.data.episodes import DatasetError, EpisodeFile
from worldmodel.tokenizer.training import train_conv_ae

__all__ = ["main"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.train_tokenizer", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--data", nargs="+", required=True, help="episode HDF5 files (experiments.collect)"
    )
    parser.add_argument("--out", default="outputs/tokenizer/conv_ae.pt", help="checkpoint path")
    parser.add_argument("--cameras", nargs="+", help="default: all cameras of the first file")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    parser.add_argument(
        "--held-out-last",
        type=int,
        default=0,
        help="hold out the last N episodes of every file (the world model's data.val_episodes) "
        "instead of a random --held-out-fraction",
    )
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--downsample", type=int, default=8, help="power of two")
    parser.add_argument("--width", type=int, default=32, help="channels of the first stage")
    parser.add_argument("--frame-fps", type=float, default=12.5, help="frames read per second")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        cameras, image_size = args.cameras, args.image_size
        if cameras is None or image_size is None:
            with EpisodeFile(args.data[0]) as first:
                cameras = cameras or first.cameras
                image_size = image_size or list(first.image_size)
        metrics = train_conv_ae(
            args.data,
            cameras,
            image_size,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            out_path=args.out,
            held_out_fraction=args.held_out_fraction,
            held_out_last=args.held_out_last,
            progress=not args.no_progress,
            latent_dim=args.latent_dim,
            downsample=args.downsample,
            width=args.width,
            frame_fps=args.frame_fps,
            device=args.device,
        )
    except (DatasetError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    print(
        f"held-out PSNR {metrics['val_psnr']:.2f} dB "
        f"(mean-frame baseline {metrics['val_psnr_mean_frame']:.2f} dB) on "
        f"{metrics['val_images']} images of {metrics['val_episodes']} held-out episode(s); "
        f"{metrics['steps']} steps in {metrics['seconds']:.0f} s; "
        f"checkpoint {metrics['out_path']}"
    )
    return metrics


if __name__ == "__main__":
    main()
