"""Data loaders: image folders (with corrupt files), digits, tables, text."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.data import digits, images, tabular, text
from edgekit.errors import InputError


def _write_images(folder: Path, n: int, color: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 30), color).save(folder / f"{i}.png")


def test_image_folder_skips_corrupt_and_non_image_files(tmp_path: Path, caplog) -> None:
    _write_images(tmp_path / "Cat", 3, (200, 10, 10))
    _write_images(tmp_path / "Dog", 2, (10, 10, 200))
    (tmp_path / "Cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "Dog" / "notes.txt").write_text("hello")
    good = (tmp_path / "Dog" / "0.png").read_bytes()
    (tmp_path / "Dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING):
        ds = images.read_image_folder(tmp_path)
    assert ds.classes == ["Cat", "Dog"]
    assert ds.labels == [0, 0, 0, 1, 1]
    assert len(ds.skipped) == 3
    assert "skipped 3 file(s)" in caplog.text


def test_class_folder_without_a_valid_image(tmp_path: Path) -> None:
    _write_images(tmp_path / "Cat", 2, (1, 2, 3))
    (tmp_path / "Dog").mkdir()
    (tmp_path / "Dog" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(InputError, match="has no valid image"):
        images.read_image_folder(tmp_path)


def test_image_folder_needs_two_classes(tmp_path: Path) -> None:
    _write_images(tmp_path / "Cat", 2, (1, 2, 3))
    with pytest.raises(InputError, match="at least 2 class subfolders"):
        images.read_image_folder(tmp_path)


def test_augment_keeps_the_size_and_is_seeded() -> None:
    import random

    im = Image.new("RGB", (64, 48), (120, 30, 200))
    a = images.augment(im, 32, random.Random(1))
    b = images.augment(im, 32, random.Random(1))
    assert a.size == (32, 32)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_synthetic_set_is_labelled_synthetic() -> None:
    ds = images.synthetic_shapes(6, 32, seed=0)
    assert ds.description["synthetic"] is True
    assert ds.labels == [0, 1, 0, 1, 0, 1]


def test_builtin_digits_are_28x28_uint8() -> None:
    d = digits.builtin_digits(seed=0)
    assert d.x_train.shape[1:] == (28, 28) and d.x_train.dtype == np.uint8
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(np.unique(d.y_train)) == set(range(10))


def test_npz_round_trip_and_missing_keys(tmp_path: Path) -> None:
    x = np.zeros((4, 28, 28), np.uint8)
    y = np.arange(4)
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    assert digits.read_npz(tmp_path / "ok.npz").x_test.shape == (4, 28, 28)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y)
    with pytest.raises(InputError, match="missing arrays"):
        digits.read_npz(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable .npz"):
        digits.read_npz(tmp_path / "junk.npz")


def test_csv_table(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9\n")
    t = tabular.read_csv_table(tmp_path / "t.csv")
    assert t.x.shape == (3, 2) and list(t.y) == [3, 6, 9]
    (tmp_path / "bad.csv").write_text("a,y\n1,x\n2,3\n")
    with pytest.raises(InputError, match="must be a number"):
        tabular.read_csv_table(tmp_path / "bad.csv")


def test_builtin_corpus_is_real_english() -> None:
    corpus = text.builtin_corpus()
    assert corpus.description["chars"] > 300_000
    assert " the " in corpus.text


def test_vocab_round_trip_and_unknown_character() -> None:
    v = text.Vocab.from_text("hello")
    assert v.chars == ["e", "h", "l", "o"]  # the seed toy's vocabulary
    assert v.decode(v.encode("ohlol")) == "ohlol"
    with pytest.raises(InputError, match="'z' is not in the vocabulary"):
        v.encode("zz")


@pytest.mark.parametrize(
    ("corpus", "message"),
    [("aaaaaaaa" * 200, "at least 2 distinct"), ("ab" * 20, "needs at least")],
)
def test_corpus_checks(corpus: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        text.check_corpus(corpus, seq_len=35)


def test_unigram_perplexity_of_a_uniform_text() -> None:
    ids = np.array([0, 1, 2, 3] * 100)
    assert text.unigram_perplexity(ids, ids, 4) == pytest.approx(4.0)
