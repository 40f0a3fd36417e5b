"""Damage made the way disks make it: real bytes overwritten inside a real HDF5 file."""

from pathlib import Path

import h5py
import numpy as np


def overwrite_middle_of(path: Path, dataset: str, length: int = 64, fill: bytes = b"") -> None:
    """``length`` bytes over the middle of ``dataset``'s first chunk on disk (of the whole
    dataset when not chunked), random or ``fill`` repeated, as a bad sector leaves them."""
    with h5py.File(path, "r") as f:
        data_id = f[dataset].id
        if f[dataset].chunks:
            chunk = data_id.get_chunk_info(0)
            start, size = chunk.byte_offset, chunk.size
        else:
            start, size = data_id.get_offset(), data_id.get_storage_size()
    data = (fill * length)[:length] if fill else np.random.default_rng(0).bytes(length)
    with open(path, "r+b") as file:
        file.seek(start + size // 2 - length // 2)
        file.write(data)
