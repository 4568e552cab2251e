"""General distillation done once and reused (issue #11): the GD cache, `--init auto`, a corrupted
entry, and the student check after task distillation."""

import json
import shutil

import pytest

from tinybert_edge.cli import main

SMALL = ["--hidden", "36", "--ffn", "40"]
COMMON = ["--batch-size", "8", "--max-seq-len", "16", "--checkpoint-every", "0"]


def _general(a, out, cache, *extra):
    return ["distill", "general", "--teacher", str(a["teacher_base"]), "--corpus", str(a["corpus"]), "--out", str(out),
            "--max-steps", "3", *SMALL, *COMMON, *extra]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "gd-cache"
    monkeypatch.setenv("TINYBERT_EDGE_GD_CACHE", str(root))
    return root


def test_a_second_run_with_the_same_settings_reuses_the_cached_student(tiny_assets, tmp_path, cache, capsys):
    assert main(_general(tiny_assets, tmp_path / "g1", cache)) == 0
    assert "kept in the cache" in capsys.readouterr().out
    entries = list(cache.iterdir())
    assert len(entries) == 1
    entry = json.loads((entries[0] / "entry.json").read_text())
    assert entry["key"]["init"] == "sliced" and entry["info"]["steps"] == 3
    assert main(_general(tiny_assets, tmp_path / "g2", cache)) == 0
    out = capsys.readouterr().out
    assert "reusing the cached general-distillation student" in out and "3 steps" in out
    assert json.loads((tmp_path / "g2" / "summary.json").read_text())["steps"] == 0
    same = (tmp_path / "g1" / "model" / "model.safetensors").read_bytes()
    assert (tmp_path / "g2" / "model" / "model.safetensors").read_bytes() == same
    # different settings (random init) make a new entry, not a hit
    assert main(_general(tiny_assets, tmp_path / "g3", cache, "--init", "random")) == 0
    assert len(list(cache.iterdir())) == 2
    assert (tmp_path / "g3" / "model" / "model.safetensors").read_bytes() != same


def test_no_gd_cache_neither_reads_nor_writes(tiny_assets, tmp_path, cache):
    assert main(_general(tiny_assets, tmp_path / "g", cache, "--no-gd-cache")) == 0
    assert not cache.exists()


def test_task_distillation_starts_from_the_cached_student_and_says_so(tiny_assets, tmp_path, cache, capsys):
    assert main(_general(tiny_assets, tmp_path / "g", cache)) == 0
    assert main(["finetune", "--model", str(tiny_assets["teacher_base"]), "--train", str(tiny_assets["train"]),
                 "--out", str(tmp_path / "t"), "--max-steps", "2", *COMMON]) == 0
    capsys.readouterr()
    assert main(["distill", "task", "--teacher", str(tmp_path / "t"), "--train", str(tiny_assets["train"]),
                 "--out", str(tmp_path / "s"), "--intermediate-max-steps", "1", "--prediction-max-steps", "1",
                 *SMALL, *COMMON]) == 0
    out = capsys.readouterr().out
    assert "student init: from " in out and "--init auto: the cached general-distillation student" in out
    spec = json.loads((tmp_path / "s" / "tinybert_edge_run.json").read_text())["spec"]
    assert spec["init"]["kind"] == "dir" and spec["init"]["source"].startswith(str(cache))


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_corrupted_or_incomplete_cache_entry_is_one_clear_error(tiny_assets, tmp_path, cache, capsys, damage):
    assert main(_general(tiny_assets, tmp_path / "g1", cache)) == 0
    entry = next(cache.iterdir())
    weights = entry / "model" / "model.safetensors"
    if damage == "corrupt":
        weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    else:
        weights.unlink()
    capsys.readouterr()
    assert main(_general(tiny_assets, tmp_path / "g2", cache)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: the cached general-distillation student") and str(entry) in err
    assert ("corrupted (sha256 mismatch)" if damage == "corrupt" else "missing model/model.safetensors") in err
    assert "--no-gd-cache" in err
    assert not (tmp_path / "g2" / "model").exists()
    shutil.rmtree(entry)  # deleting the entry is the documented fix
    assert main(_general(tiny_assets, tmp_path / "g2", cache, "--overwrite")) == 0


def test_near_chance_student_warns_and_strict_check_refuses_to_write(tiny_assets, tmp_path, cache, capsys):
    # A random 1-step student of a random teacher is at chance on dev.
    argv = ["distill", "task", "--teacher", str(tiny_assets["teacher_cls"]), "--train", str(tiny_assets["train"]),
            "--dev", str(tiny_assets["dev"]), "--intermediate-max-steps", "1", "--prediction-max-steps", "1",
            "--init", "random", *COMMON]
    assert main([*argv, "--out", str(tmp_path / "s1")]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the student is near chance" in err and "--init sliced" in err
    check = json.loads((tmp_path / "s1" / "model" / "student_check.json").read_text())
    assert check["near_chance"] is True
    assert main([*argv, "--out", str(tmp_path / "s2"), "--strict-student-check"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: the student is near chance") and "--strict-student-check" in last
    assert not (tmp_path / "s2" / "model").exists()
