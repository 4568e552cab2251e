"""The reproduction driver (issue #11) on a tiny config: two arms, a few steps; the table's shape,
skipping finished arms, and an interrupted arm resuming to the uninterrupted result."""

import json
import shutil

import pytest

from benchmarks.scripts.reproduce import main

pytestmark = pytest.mark.slow

TINY = {"seq_len": 16, "batch_size": 8, "teacher_epochs": 1, "step1_epochs": 1, "step2_epochs": 1, "gd_steps": 4,
        "gd_snapshots": [2], "gd_seq_len": 16, "gd_batch_size": 8, "aug_n": 2, "small_rows": 20,
        "small_teacher_epochs": 1, "seeds": [1, 2], "student": {"hidden_size": 36, "intermediate_size": 40}}


@pytest.fixture
def grid_args(tiny_assets, tmp_path):
    from conftest import sentences, write_tsv

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    test = write_tsv(tmp_path / "test.tsv", sentences(20, seed=4))
    a = tiny_assets

    def args(runs, out, arms):
        return ["--runs", str(runs), "--out", str(out), "--config", str(cfg), "--arms", arms,
                "--pretrained", str(a["teacher_base"]), "--train", str(a["train"]), "--dev", str(a["dev"]),
                "--test", str(test), "--corpus", str(a["corpus"])]

    return args


def _weights(result):
    from pathlib import Path

    return (Path(result["model"]) / "model.safetensors").read_bytes()


def test_two_arms_make_the_table_and_finished_arms_are_skipped(grid_args, tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert main(grid_args(runs, out, "teacher,ours-sliced-td")) == 0
    report = json.loads((out / "reproduce.json").read_text())
    # the headline arm runs its seeds: teacher + 2 instances
    assert [r["instance"] for r in report["arms"]] == ["teacher", "ours-sliced-td", "ours-sliced-td@2"]
    rows = {r["arm"]: r for r in report["summary"]["rows"]}
    assert set(rows) == {"teacher", "ours-sliced-td"}
    row = rows["ours-sliced-td"]
    for key in ("dev_accuracy", "test_accuracy", "dev_macro_f1", "test_macro_f1", "dev_accuracy_kept",
                "test_macro_f1_kept", "steps", "train_minutes"):
        assert key in row, key
    assert row["seeds"] == [1, 2] and row["dev_accuracy_std"] is not None
    assert len(row["test_per_class_recall"]) == 2 and row["steps"] == 2 * 6  # step 1 + step 2, 6 batches each
    assert rows["teacher"]["dev_accuracy_kept"] == 1.0
    teacher = report["summary"]["teacher"]
    assert row["dev_accuracy_kept"] == pytest.approx(row["dev_accuracy"] / teacher["dev"]["accuracy"])
    md = (out / "reproduce.md").read_text()
    assert md.count("\n| ") == 1 + 2 and "(`ours-sliced-td`) | 2 |" in md  # header + separator + 2 rows
    assert (out / "reproduce.png").stat().st_size > 10_000
    before = (runs / "arms" / "ours-sliced-td" / "result.json").read_text()
    capsys.readouterr()
    assert main(grid_args(runs, out, "teacher,ours-sliced-td")) == 0  # everything finished: nothing reruns
    assert "dev " not in capsys.readouterr().out.split("wrote")[0]
    assert (runs / "arms" / "ours-sliced-td" / "result.json").read_text() == before


def test_an_interrupted_arm_resumes_to_the_uninterrupted_result(grid_args, tmp_path):
    a_runs, b_runs = tmp_path / "a", tmp_path / "b"
    assert main(grid_args(a_runs, tmp_path / "oa", "paper-no-da")) == 0
    assert main(grid_args(b_runs, tmp_path / "ob", "paper-no-da")) == 0
    # Interrupt b after step 1: step 2, the final model and the result are gone (a kill mid-step is the
    # training loop's resume, tested in test_resume.py); the rerun must resume, not restart.
    arm = b_runs / "arms" / "paper-no-da"
    step1 = (arm / "student" / "step1-intermediate" / "model" / "model.safetensors").read_bytes()
    for p in (arm / "result.json", arm / "student" / "model"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.rmtree(arm / "student" / "step2-prediction")
    assert main(grid_args(b_runs, tmp_path / "ob", "paper-no-da")) == 0
    assert (arm / "student" / "step1-intermediate" / "model" / "model.safetensors").read_bytes() == step1
    ra = json.loads((a_runs / "arms" / "paper-no-da" / "result.json").read_text())
    rb = json.loads((arm / "result.json").read_text())
    assert _weights(ra) == _weights(rb)
    assert ra["dev"] == rb["dev"] and ra["test"] == rb["test"]


def test_unknown_arm_is_one_clear_error(grid_args, tmp_path, capsys):
    assert main(grid_args(tmp_path / "r", tmp_path / "o", "teacher,paper-ful")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown arm(s) paper-ful; known arms: teacher,")
    assert not (tmp_path / "r").exists()


def test_one_seed_of_an_arm_can_be_asked_for_before_the_others(tmp_path):
    from benchmarks.scripts.reproduce import Grid, GridConfig

    from tinybert_edge.errors import ConfigError

    g = Grid(tmp_path, GridConfig(), None)
    # the teacher first; name@first-seed is the arm's plain instance; a later plain name adds only what is missing
    assert g.names(["ours-sliced-td@42", "student-finetune", "ours-sliced-td"]) == [
        "teacher", "ours-sliced-td", "student-finetune", "ours-sliced-td@43", "ours-sliced-td@44"]
    with pytest.raises(ConfigError, match="ours-sliced-td@45: arm ours-sliced-td runs seeds 42, 43, 44"):
        g.names(["ours-sliced-td@45"])
    with pytest.raises(ConfigError, match="unknown arm"):
        g.names(["no-such-arm@42"])


def test_small_data_arms_run_at_least_one_pass_over_their_augmented_rows(grid_args, tmp_path):
    """At 1,000 rows the grid's epochs of the original rows gave 96 steps in all, too few to judge a
    method by; each step of a small-data arm now runs at least one pass over what it trains on."""
    import math

    runs = tmp_path / "runs"
    assert main(grid_args(runs, tmp_path / "out", "small-ours")) == 0
    r = json.loads((runs / "arms" / "small-ours" / "result.json").read_text())
    side = json.loads((runs / "shared" / "aug-small" / "train_aug.tsv.json").read_text())
    one_pass = math.ceil(side["output_rows"] / TINY["batch_size"])
    plain = math.ceil(TINY["small_rows"] / TINY["batch_size"])  # 1 epoch of the 20 original rows, per step
    assert one_pass > plain
    assert r["steps"] == 2 * one_pass, (r["steps"], one_pass)


def test_gd_minutes_do_not_count_the_minutes_a_run_sat_paused(tmp_path):
    """A GD run paused (SIGSTOP) between its 1,000-step snapshot and its end shows a wall time
    that no GD step cost; the table and the GD-minutes curve count that segment at the median
    rate, and a run never paused keeps its wall time."""
    from benchmarks.scripts.reproduce import Grid, GridConfig

    g = Grid(tmp_path, GridConfig(), None)
    gd = g.shared / "gd-sliced"
    for step, seconds in ((300, 150.0), (1000, 500.0)):
        snap = gd / "snapshots" / f"step-{step:08d}"
        snap.mkdir(parents=True)
        (snap / "snapshot.json").write_text(json.dumps({"step": step, "training_seconds": seconds}))
    (gd / "summary.json").write_text(json.dumps({"steps": 3000, "seconds_total": 7500.0}))  # 2.5 s/step: paused
    full, at_300 = g.arms["ours-sliced-gd-td"], g.arms["gd-curve-sliced-300"]
    # segments 0-300 and 300-1000 run at 0.5 s/step; 1000-3000 at 3.5 s/step was paused
    assert g._prerequisites(full)["gd"] == {"steps": 3000, "minutes": 25.0, "wall_minutes": 125.0}
    assert g._prerequisites(at_300)["gd"] == {"steps": 300, "minutes": 2.5, "wall_minutes": 2.5}
    (gd / "summary.json").write_text(json.dumps({"steps": 3000, "seconds_total": 1600.0}))  # never paused
    assert g._prerequisites(full)["gd"]["minutes"] == pytest.approx(1600.0 / 60)


def test_a_carried_report_keeps_its_rows_and_a_rerun_teacher_matches_it(grid_args, tmp_path, capsys):
    """A lost run directory (a new machine) loses no row: --carry takes the committed report's arm
    instances as finished, keeps them marked in the table, and runs only what it lacks; the
    teacher, which new arms distil from, runs again and must give the carried teacher's numbers."""
    first, out = tmp_path / "first", tmp_path / "out"
    assert main(grid_args(first, out, "teacher,student-finetune")) == 0
    old = json.loads((out / "reproduce.json").read_text())
    carry = ["--carry", str(out / "reproduce.json")]

    runs, only = tmp_path / "new-machine", tmp_path / "only-carried"
    capsys.readouterr()
    assert main(grid_args(runs, only, "teacher,student-finetune") + carry) == 0
    assert capsys.readouterr().out.count(": carried from ") == 2
    assert not (runs / "arms").exists()  # nothing ran
    report = json.loads((only / "reproduce.json").read_text())
    assert [r["instance"] for r in report["arms"]] == ["teacher", "student-finetune"]
    assert all(r["carried_from"]["date"] == old["date"] for r in report["arms"])
    assert report["summary"]["rows"] == old["summary"]["rows"]
    assert "Carried from earlier reports" in (only / "reproduce.md").read_text()

    both = tmp_path / "both"
    assert main(grid_args(runs, both, "teacher,student-finetune,student-pred-kd") + carry) == 0
    assert sorted(p.name for p in (runs / "arms").iterdir()) == ["student-pred-kd", "teacher"]
    report = json.loads((both / "reproduce.json").read_text())
    by = {r["instance"]: r for r in report["arms"]}
    assert set(by) == {"teacher", "student-finetune", "student-pred-kd"}
    assert "carried_from" in by["student-finetune"] and "carried_from" not in by["teacher"]
    assert by["teacher"]["dev"] == old["arms"][0]["dev"] and by["teacher"]["test"] == old["arms"][0]["test"]
    assert "same accuracies: `teacher`" in (both / "reproduce.md").read_text()


def test_a_carried_report_of_other_budgets_or_damaged_is_one_clear_error(grid_args, tmp_path, capsys):
    first, out = tmp_path / "first", tmp_path / "out"
    assert main(grid_args(first, out, "teacher")) == 0
    report = json.loads((out / "reproduce.json").read_text())
    report["config"]["step2_epochs"] = 7
    other = tmp_path / "other.json"
    other.write_text(json.dumps(report))
    damaged = tmp_path / "damaged.json"
    damaged.write_text((out / "reproduce.json").read_text()[:200])
    for path, msg in ((other, "made with other grid budgets (step2_epochs differ)"),
                      (damaged, "not a readable JSON report"), (tmp_path / "none.json", "no such file")):
        capsys.readouterr()
        dest = tmp_path / f"o-{path.stem}"
        assert main(grid_args(tmp_path / "r2", dest, "teacher") + ["--carry", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
        assert not dest.exists() and not (tmp_path / "r2").exists()
