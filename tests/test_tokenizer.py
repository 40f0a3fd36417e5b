"""Tokenizers: patch round trip and token layout, conv_ae shapes and learning, checkpoints,
the latent cache and the factory's errors. Real frames come from the project's collector."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (selects the GL backend before anything imports mujoco)
from experiments import train_tokenizer
from worldmodel.data.collection import CollectionJob, run_collection
from worldmodel.data.episodes import DatasetError, EpisodeFile
from worldmodel.tokenizer import (
    ConvAETokenizer,
    PatchTokenizer,
    TokenizerConfig,
    encode_dataset,
    load_cached_latents,
    load_conv_ae,
    make_tokenizer,
    psnr,
    save_conv_ae,
    train_conv_ae,
)
from worldmodel.tokenizer.patch import PIXEL_MEAN, PIXEL_STD

SIZE = (32, 32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 expert episodes (head camera, 32x32): 3 to train on, 1 held out."""
    data_dir = tmp_path_factory.mktemp("data")
    job = CollectionJob(
        task="pick_dual_cylinders",
        setting="clean",
        episodes=4,
        cameras=("head",),
        image_size=SIZE,
        data_dir=data_dir,
        eval_episodes=0,
    )
    return run_collection(job).out_path


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """(metrics, checkpoint path) of a conv_ae trained for 200 steps (~4 s on 2 cores)."""
    out = tmp_path_factory.mktemp("tok") / "conv_ae.pt"
    metrics = train_conv_ae(
        [dataset],
        ["head"],
        SIZE,
        steps=200,
        batch_size=16,
        lr=3e-3,
        seed=0,
        out_path=out,
        held_out_fraction=0.25,
        progress=False,
        downsample=4,
        width=16,
        frame_fps=25,
    )
    return metrics, out


def random_frames(*lead: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        cam: torch.randint(0, 256, (*lead, *SIZE, 3), generator=g, dtype=torch.uint8)
        for cam in ("head", "left_wrist")
    }


# ---------------------------------------------------------------- patch


def test_patch_round_trip_and_shapes_with_leading_dims():
    tok = PatchTokenizer(["head", "left_wrist"], SIZE, patch=8)
    assert (tok.tokens_per_frame, tok.latent_dim) == (2 * 16, 8 * 8 * 3)
    frames = random_frames(2, 3)  # (B, F, H, W, 3)
    latents = tok.encode(frames)
    assert latents.shape == (2, 3, 32, 192) and latents.dtype == torch.float32
    decoded = tok.decode(latents)
    assert list(decoded) == ["head", "left_wrist"]
    for cam, images in frames.items():
        assert decoded[cam].shape == (2, 3, *SIZE, 3)
        assert torch.equal((decoded[cam] * 255).round().to(torch.uint8), images)
    floats = {cam: images.float() / 255 for cam, images in frames.items()}
    again = tok.decode(tok.encode(floats))
    for cam in floats:
        assert (again[cam] - floats[cam]).abs().max() < 1e-6
    # uniform pixels: mean 0.5, std 0.289 -> latents about N(0, 1.15^2)
    assert latents.mean().abs() < 0.05 and 1.0 < latents.std() < 1.3


def test_patch_token_layout_by_hand():
    """Cameras in constructor order along N; tokens in raster order; channels (row, col, rgb)."""
    tok = PatchTokenizer(["b", "a"], (4, 4), patch=2)
    image = torch.arange(4 * 4 * 3, dtype=torch.float32).reshape(4, 4, 3) / 47.0
    latents = tok.encode({"a": torch.zeros(4, 4, 3), "b": image})  # (N=8, C=12)
    assert latents.shape == (8, 12)
    to_latent = lambda v: (v - PIXEL_MEAN) / PIXEL_STD  # noqa: E731
    # token 1 of camera "b" is the patch of rows 0-1, columns 2-3
    expected = torch.stack([image[0, 2], image[0, 3], image[1, 2], image[1, 3]]).reshape(-1)
    torch.testing.assert_close(latents[1], to_latent(expected))
    torch.testing.assert_close(latents[4:], torch.full((4, 12), to_latent(0.0)))


def test_encode_rejects_wrong_cameras_and_sizes():
    tok = PatchTokenizer(["head", "left_wrist"], SIZE)
    with pytest.raises(ValueError, match="expected cameras"):
        tok.encode({"head": torch.zeros(*SIZE, 3)})
    with pytest.raises(ValueError, match="expected shape"):
        tok.encode({"head": torch.zeros(16, 16, 3), "left_wrist": torch.zeros(16, 16, 3)})
    with pytest.raises(ValueError, match="leading dims"):
        tok.encode({"head": torch.zeros(2, *SIZE, 3), "left_wrist": torch.zeros(3, *SIZE, 3)})
    with pytest.raises(ValueError, match="latents: expected shape"):
        tok.decode(torch.zeros(5, 7))
    with pytest.raises(ValueError, match="patch=5"):
        PatchTokenizer(["head"], SIZE, patch=5)


def test_psnr_hand_values():
    a = torch.zeros(2, 4, 4, 3)
    b = torch.full((2, 4, 4, 3), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)
    b[1] = 0.01  # MSE 1e-4 -> 40 dB; the mean is taken over per-image values
    assert psnr(a, b).item() == pytest.approx(30.0, abs=1e-4)
    assert psnr(a * 255, b * 255, max_value=255.0).item() == pytest.approx(30.0, abs=1e-4)


# ---------------------------------------------------------------- conv_ae


def test_conv_ae_shapes():
    tok = ConvAETokenizer(["head", "left_wrist"], SIZE, latent_dim=4, downsample=8, width=8)
    assert (tok.tokens_per_frame, tok.latent_dim) == (2 * 4 * 4, 4)
    latents = tok.encode(random_frames(2, 3))
    assert latents.shape == (2, 3, 32, 4)
    decoded = tok.decode(latents)
    for images in decoded.values():
        assert images.shape == (2, 3, *SIZE, 3)
        assert images.min() >= 0 and images.max() <= 1
    one = {cam: images[0, 0] for cam, images in random_frames(2, 3).items()}  # no leading dims
    assert tok.encode(one).shape == (32, 4)
    torch.testing.assert_close(tok.encode(one), latents[0, 0])
    with pytest.raises(ValueError, match="downsample=6"):
        ConvAETokenizer(["head"], SIZE, downsample=6)


def test_conv_ae_learns_beyond_the_mean_frame(trained):
    metrics, _ = trained
    assert metrics["val_episodes"] == 1 and metrics["train_episodes"] == 3
    # measured ~1.8-2.5 dB above the baseline over seeds 0-3; 0.5 dB leaves room for CPUs
    assert metrics["val_psnr"] > metrics["val_psnr_mean_frame"] + 0.5, metrics


def test_conv_ae_checkpoint_and_latent_statistics(trained, dataset, tmp_path):
    metrics, path = trained
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["config"]["name"] == "conv_ae"
    assert checkpoint["metrics"]["val_psnr"] == pytest.approx(metrics["val_psnr"])
    assert "state_dict" in checkpoint and "git_commit" in checkpoint

    tok = load_conv_ae(path)
    copy = load_conv_ae(save_conv_ae(tok, tmp_path / "copy.pt"))
    by_name = make_tokenizer("conv_ae", ["head"], SIZE, checkpoint=str(path), downsample=4)
    with EpisodeFile(dataset) as data:
        frames = {"head": torch.from_numpy(data.episode_at_fps(0, 12.5).images["head"])}
    with torch.no_grad():
        latents = tok.encode(frames)  # (F, N, C)
        decoded = tok.decode(latents)["head"]
        for other in (copy, by_name):
            assert torch.equal(other.decode(latents)["head"], decoded)
    assert latents.shape == (len(frames["head"]), 64, 8)
    # standardised on training frames: about zero mean, unit variance per channel
    assert latents.mean((0, 1)).abs().max() < 0.5
    assert ((latents.std((0, 1)) > 0.5) & (latents.std((0, 1)) < 2.0)).all()


# ---------------------------------------------------------------- cache


def test_cache_is_reused_and_keyed_by_checkpoint(trained, dataset, tmp_path):
    _, path = trained
    tok = load_conv_ae(path)
    cache = encode_dataset(tok, dataset, tmp_path / "cache", batch_size=64, progress=False)
    mtime = cache.stat().st_mtime_ns
    assert encode_dataset(tok, dataset, tmp_path / "cache", progress=False) == cache
    assert cache.stat().st_mtime_ns == mtime

    with EpisodeFile(dataset) as data:
        steps = int(data.lengths[1])
        images = torch.from_numpy(data.episode(1).images["head"])
    latents = load_cached_latents(cache, 1)
    assert latents.shape == (steps + 1, tok.tokens_per_frame, tok.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(latents[:5], tok.encode({"head": images[:5]}))
    strided = load_cached_latents(cache, 1, fps=12.5)  # every 4th control step
    assert torch.equal(strided, latents[: steps // 4 * 4 + 1 : 4])

    with torch.no_grad():  # another checkpoint: one weight changed
        tok.decoder[0].bias[0] += 0.1
    other = load_conv_ae(save_conv_ae(tok, tmp_path / "other.pt"))
    other_cache = encode_dataset(other, dataset, tmp_path / "cache", progress=False)
    assert other_cache != cache and other_cache.is_file()
    patch_cache = encode_dataset(PatchTokenizer(["head"], SIZE), dataset, tmp_path / "cache")
    assert patch_cache not in (cache, other_cache)
    assert load_cached_latents(patch_cache, 0).shape[1:] == (16, 192)


def test_a_damaged_cache_is_one_line_naming_it_and_the_fix(dataset, tmp_path):
    cache = encode_dataset(PatchTokenizer(["head"], SIZE), dataset, tmp_path / "cache")
    with h5py.File(cache, "r") as f:
        address = h5py.h5o.get_info(f["episodes/ep_000001"].id).addr
    with open(cache, "r+b") as f:  # garbage over an episode's object header
        f.seek(address)
        f.write(np.random.default_rng(0).bytes(64))
    with pytest.raises(DatasetError) as info:
        load_cached_latents(cache, 1)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{cache}: unreadable latent cache")
    assert message.endswith("delete it; the next run encodes the dataset again")
    cache.write_bytes(cache.read_bytes()[:100])  # cut short, as a full disk leaves it
    with pytest.raises(DatasetError, match="unreadable latent cache .* delete it"):
        load_cached_latents(cache, 0)


# ---------------------------------------------------------------- factory and CLI


def test_make_tokenizer_errors(trained):
    _, path = trained
    with pytest.raises(ValueError, match="choose one of: patch, conv_ae") as info:
        make_tokenizer("vqgan", ["head"], SIZE)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="python -m experiments.train_tokenizer"):
        make_tokenizer("conv_ae", ["head"], SIZE)
    with pytest.raises(FileNotFoundError, match="experiments.train_tokenizer"):
        make_tokenizer("conv_ae", ["head"], SIZE, checkpoint="missing.pt")
    with pytest.raises(ValueError, match="latent_dim=16"):
        make_tokenizer("conv_ae", ["head"], SIZE, checkpoint=str(path), latent_dim=16)
    with pytest.raises(ValueError, match="trained on"):
        make_tokenizer("conv_ae", ["left_wrist"], SIZE, checkpoint=str(path))
    with pytest.raises(ValueError, match="tokenizer.name='vqgan'"):
        TokenizerConfig(name="vqgan")
    tok = TokenizerConfig(name="patch", patch=4).build(["head"], SIZE)
    assert isinstance(tok, PatchTokenizer) and tok.latent_dim == 48
    tok = TokenizerConfig(name="conv_ae", checkpoint=str(path)).build(["head"], SIZE)
    assert isinstance(tok, ConvAETokenizer) and tok.downsample == 4
    with pytest.raises(ValueError, match="downsample=8"):
        TokenizerConfig(name="conv_ae", checkpoint=str(path), downsample=8).build(["head"], SIZE)


def test_cli_prints_held_out_psnr(dataset, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    argv = ["--data", str(dataset), "--steps", "2", "--batch-size", "4"]
    train_tokenizer.main([*argv, "--width", "8", "--out", str(out), "--no-progress"])
    assert "held-out PSNR" in capsys.readouterr().out
    assert out.is_file() and np.isfinite(torch.load(out, weights_only=True)["metrics"]["val_psnr"])


def test_held_out_last_holds_out_the_world_models_validation_episodes(dataset, tmp_path):
    """--held-out-last N keeps the last N episodes (data.val_episodes) out of training."""
    out = tmp_path / "last.pt"
    argv = ["--data", str(dataset), "--steps", "2", "--batch-size", "4", "--width", "8"]
    train_tokenizer.main([*argv, "--held-out-last", "2", "--out", str(out), "--no-progress"])
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["training"]["held_out_episodes"] == [f"{dataset}:2", f"{dataset}:3"]
    assert checkpoint["metrics"]["train_episodes"] == 2
    with pytest.raises(SystemExit, match="held_out_last=4 leaves no training episode"):
        train_tokenizer.main([*argv, "--held-out-last", "4", "--out", str(out), "--no-progress"])
