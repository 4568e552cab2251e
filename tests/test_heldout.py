"""benchmarks/scripts/heldout.py: bundles re-scored on another labelled split, through the real
ExecuTorch and ai-edge-litert runtimes, on a tiny 5-class classifier and data unlike Rotten
Tomatoes (five labels, a first row longer than every bucket).

The claims: scored on the file it was validated on, a bundle's agreement is exactly the one
`export` recorded (same reference, same padded inputs), for both formats and a failed bundle too;
on another file the report counts that file's rows and both accuracies; a bundle that is not
there is one error, exit 2, and nothing is written."""

import json
import shutil

import numpy as np
import pytest

from conftest import FIVE_LABELS as LABELS
from conftest import five_class_rows as _rows
from conftest import make_tiny_model_dir, write_tsv
from tinybert_edge.cli import main
from tinybert_edge.evaluate import agreement_interval

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    model = make_tiny_model_dir(root / "cls5", classifier=True, labels=LABELS, layers=2, seed=3, logit_scale=300.0)
    dev = write_tsv(root / "dev.tsv", _rows(40, seed=4, long_first=True))
    test = write_tsv(root / "test.tsv", _rows(30, seed=8))
    out = root / "b"
    # threshold 100 %: the int8 bundles are kept and marked failed, and are scored all the same
    for fmt in ("executorch", "tflite"):
        main(["export", "--model", str(model), "--data", str(dev), "--seq-len", "32", "--format", fmt,
              "--quantize", "none,int8", "--threshold", "100", "--out", str(out)])
    return {"dev": dev, "test": test, "dirs": sorted(p for p in out.iterdir() if p.is_dir())}


def test_heldout_reproduces_export_agreement_on_its_own_data_and_scores_another_file(bundles, tmp_path):
    from benchmarks.scripts import heldout

    dirs = bundles["dirs"]
    assert len(dirs) == 4
    # a failed bundle is scored too: one marked failed as `export` marks one under the threshold
    failed = tmp_path / f"{dirs[-1].name}-marked-failed"
    shutil.copytree(dirs[-1], failed)
    meta = json.loads((failed / "metadata.json").read_text())
    (failed / "metadata.json").write_text(json.dumps({**meta, "status": "failed"}))
    dirs = [*dirs, failed]
    out = tmp_path / "same"
    assert heldout.main([*sum((["--bundle", str(d)] for d in dirs), []), "--data", str(bundles["dev"]),
                         "--out", str(out)]) == 0
    report = json.loads((out / "heldout.json").read_text())
    assert report["results"][-1]["status"] == "failed"
    for d, r in zip(dirs, report["results"]):
        meta = json.loads((d / "metadata.json").read_text())
        v, parity = meta["validation"], meta["parity"]
        assert r["bundle"] == d.name and r["examples"] == v["examples"] == 40
        assert r["label_agreement"] == pytest.approx(v["label_agreement"], abs=1e-12)
        assert r["accuracy"] == pytest.approx(v["artifact_accuracy"], abs=1e-12)
        assert r["fp32_accuracy"] == pytest.approx(v["fp32_accuracy"], abs=1e-12)
        # each agreement with its 95 % interval on its rows, the export's as metadata.json recorded it
        assert r["interval"] == list(agreement_interval(round(r["label_agreement"] * 40), 40))
        assert r["export_interval"] == pytest.approx([v["label_agreement_interval"]["low"],
                                                      v["label_agreement_interval"]["high"]])
        assert r["interval"][0] <= r["label_agreement"] <= r["interval"][1]
        # the continuous figures too (this random tiny model gives every text one label, so labels
        # alone would agree whatever was compared)
        assert r["mean_abs_diff"] == pytest.approx(parity["mean_abs"], rel=1e-3, abs=1e-6), d.name
        assert r["max_abs_diff"] == pytest.approx(parity["max_abs"], rel=1e-3, abs=1e-6), d.name
    fp32 = [r for r in report["results"] if r["quantization"] == "none"]
    assert fp32 and all(r["label_agreement"] == 1.0 and r["mean_abs_diff"] < 1e-4 for r in fp32)

    other = tmp_path / "other"
    assert heldout.main(["--bundle", str(dirs[0]), "--data", str(bundles["test"]), "--out", str(other)]) == 0
    [r] = json.loads((other / "heldout.json").read_text())["results"]
    assert r["examples"] == 30 and 0.0 <= r["accuracy"] <= 1.0
    table = (other / "heldout.md").read_text()
    assert f"| {dirs[0].name} |" in table and "test.tsv" in table
    assert f"{100 * r['label_agreement']:.2f} % ({100 * r['interval'][0]:.2f}-{100 * r['interval'][1]:.2f})" in table
    assert (other / "heldout.png").stat().st_size > 10_000
    assert np.isfinite(r["mean_abs_diff"])


@pytest.mark.parametrize("case", ["missing bundle", "retrained source", "empty data"])
def test_heldout_bad_input_is_one_error_and_writes_nothing(bundles, tmp_path, capsys, case):
    """A bundle that is not there, a source model that is not the one the bundle was exported from
    (its recorded sha256 differs: trained again in place), or a file without rows: one error line
    naming it, exit 2, nothing written; each is found before the first bundle is scored."""
    from benchmarks.scripts import heldout

    good, data = bundles["dirs"][0], bundles["test"]
    bad = tmp_path / "nope"
    if case == "retrained source":
        shutil.copytree(bundles["dirs"][1], bad)
        meta = json.loads((bad / "metadata.json").read_text())
        meta["source_model"]["sha256"] = "0" * 64
        (bad / "metadata.json").write_text(json.dumps(meta))
    if case == "empty data":
        bad = bundles["dirs"][1]
        data = write_tsv(tmp_path / "empty.tsv", [])
    out = tmp_path / "r"
    assert heldout.main(["--bundle", str(good), "--bundle", str(bad), "--data", str(data), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    errors = [x for x in captured.err.splitlines() if x.startswith("error: ")]
    needle = {"missing bundle": "nope", "retrained source": "is not the model", "empty data": "no rows"}[case]
    assert len(errors) == 1 and needle in errors[0], errors
    assert "agreement" not in captured.out  # nothing was scored
    assert not out.exists()
