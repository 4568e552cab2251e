"""`tinybert-edge bench --device adb[:SERIAL]` (issue #4, Android part).

No phone exists on CI, so the phone is absent here: `adb` is replaced by a recorder that answers
each command as a phone with the demo app would, and hands back a results file in the app's
format (android_demo/core/src/test/resources/bench-device-example.json: written by the app core's
BenchmarkRunner, with phone-like device fields and timings filled in, since no phone ran it).
What is real: the bundles, the commands built, the validation and the merge into the report."""

import copy
import json
import shlex
from pathlib import Path

import pytest

from tinybert_edge.benchmarks import android
from tinybert_edge.benchmarks.android import Adb, DeviceError, device_row, run_device_bench, validate_device_results
from tinybert_edge.benchmarks.harness import to_markdown
from tinybert_edge.cli import main
from conftest import make_tiny_model_dir, sentences, write_tsv

EXAMPLE = Path(__file__).resolve().parent.parent / "android_demo/core/src/test/resources/bench-device-example.json"


class FakePhone:
    """Answers adb like a phone with the demo app installed; records every command."""

    def __init__(self, state="device", p50=None):
        self.commands, self.started, self.state, self.p50 = [], [], state, p50 or {}

    def __call__(self, argv):
        self.commands.append(argv)
        args = argv[3:] if argv[1] == "-s" else argv[1:]
        if args[0] == "get-state":
            return (0, "device\n") if self.state == "device" else (1, "error: no devices/emulators found")
        if args[0] == "push":
            assert Path(args[1]).exists()
            return 0, "1 file pushed"
        if args[0] == "pull":
            extras = dict(zip(self.started[-1][1::2], self.started[-1][2::2]))
            doc = json.loads(EXAMPLE.read_text())
            doc["settings"].update(threads=int(extras["threads"]), iterations=int(extras["iterations"]),
                                   warmup=int(extras["warmup"]), workload=extras["workload"])
            doc["bundle"]["name"] = Path(extras["model"]).name
            doc["result"]["p50_ms"] = self.p50.get(doc["bundle"]["name"], doc["result"]["p50_ms"])
            doc["result"]["p90_ms"] = doc["result"]["p99_ms"] = doc["result"]["p50_ms"] * 1.2
            Path(args[2]).write_text(json.dumps(doc))
            return 0, ""
        assert args[0] == "shell"
        cmd = shlex.split(args[1])
        if cmd[:2] == ["am", "start"]:
            # the extras, as "--es/--ei key value" triples after the component
            i = cmd.index("-n")
            assert cmd[i + 1] == "org.tinybertedge.demo/.BenchmarkActivity"
            triples = cmd[i + 2:]
            self.started.append(["start"] + [x for k in range(0, len(triples), 3) for x in triples[k + 1:k + 3]])
            return 0, "Status: ok"
        if cmd[0] == "test":
            return (0, "") if self.started else (1, "")
        return 0, ""


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("adb")
    model = make_tiny_model_dir(root / "student", classifier=True, layers=2, seed=3)
    dev = write_tsv(root / "dev.tsv", sentences(10, seed=2))
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "none,int8", "--seq-len", "32", "--fixed",
                 "--data", str(dev), "--out", str(root / "b"), "--threshold", "50"]) == 0
    return sorted((root / "b").iterdir()), dev


def test_example_in_the_apps_format_is_valid_and_becomes_a_report_row():
    doc = json.loads(EXAMPLE.read_text())
    validate_device_results(doc)
    row = device_row(doc, name="student int8")
    assert row["status"] == "ok" and row["backend"] == "tflite" and row["memory_metric"] == "pss"
    assert row["p50_ms"] == doc["result"]["p50_ms"] and row["accuracy"] == doc["result"]["accuracy"]


@pytest.mark.parametrize("breaks", [
    lambda d: d.pop("result"), lambda d: d["result"].pop("p50_ms"), lambda d: d.update(schema="x"),
    lambda d: d.update(schema_version=2), lambda d: d["settings"].update(workload="turbo"),
    lambda d: d["result"].update(p99_ms=0.0), lambda d: d["result"].update(accuracy=1.5),
    lambda d: d["result"].update(runs="20")])
def test_results_that_break_the_schema_are_refused(breaks):
    doc = json.loads(EXAMPLE.read_text())
    breaks(doc)
    with pytest.raises(ValueError):
        validate_device_results(doc)


def test_failed_result_from_the_app_becomes_a_failed_row():
    doc = json.loads(EXAMPLE.read_text())
    doc["result"] = {"status": "failed", "reason": "BundleException: vocab.txt has no [CLS] token"}
    row = device_row(doc, name="x")
    assert row["status"] == "failed" and "[CLS]" in row["reason"]


def test_commands_and_merge_against_a_phone_that_is_not_here(bundles):
    paths, dev = bundles
    phone = FakePhone(p50={paths[0].name: 30.0, paths[1].name: 6.0})
    adb = Adb("emulator-5554", run=phone)
    report = run_device_bench([("fp32", "teacher", str(paths[0])), ("int8", "student", str(paths[1]))], adb,
                              threads=[1, 4], workloads=["fixed", "real"], runs=20, warmup=3, data=str(dev), poll=0)
    # every command names the serial; bundles and the eval file go to /data/local/tmp
    assert all(c[:3] == ["adb", "-s", "emulator-5554"] for c in phone.commands)
    pushes = [c[4:] for c in phone.commands if c[3] == "push"]
    # a bundle folder goes into the parent after its old copy is removed: `adb push DIR dest` onto an
    # existing dest nests DIR inside it and leaves the stale bundle where the app reads it
    assert [p[1] for p in pushes] == ["/data/local/tmp/tinybert-edge/", "/data/local/tmp/tinybert-edge/",
                                      "/data/local/tmp/tinybert-edge/eval.tsv"]
    shells = [c[4] for c in phone.commands if c[3] == "shell"]
    for p in paths:
        rm = f"rm -rf /data/local/tmp/tinybert-edge/{p.name}"
        assert rm in shells
        push_at = next(i for i, c in enumerate(phone.commands) if c[3] == "push" and c[4] == str(p))
        assert phone.commands.index(["adb", "-s", "emulator-5554", "shell", rm]) < push_at
    assert len(phone.started) == 2 * 2 * 2
    extras = dict(zip(phone.started[0][1::2], phone.started[0][2::2]))
    assert extras == {"model": f"/data/local/tmp/tinybert-edge/{paths[0].name}", "threads": "1", "iterations": "20",
                      "warmup": "3", "workload": "fixed", "out": extras["out"],
                      "data": "/data/local/tmp/tinybert-edge/eval.tsv"}
    assert extras["out"].startswith("/sdcard/Android/data/org.tinybertedge.demo/files/")
    # merged into the harness's report: same schema, ratios vs the teacher row
    assert report["schema"] == "tinybert-edge/bench" and len(report["rows"]) == 8
    int8 = [r for r in report["rows"] if r["name"] == "int8"]
    assert all(r["status"] == "ok" and r["speedup_vs"]["fp32"] == pytest.approx(5.0) for r in int8)
    assert {(r["threads"], r["workload"]) for r in int8} == {(1, "fixed"), (4, "fixed"), (1, "real"), (4, "real")}
    assert report["machine"]["device"]["model"] == "Pixel 8"
    assert "| int8 | tflite |" in to_markdown(report)


def test_cli_device_absent_exits_2_naming_the_fix(bundles, tmp_path, monkeypatch, capsys):
    paths, _ = bundles
    monkeypatch.setattr(Adb, "_subprocess", staticmethod(FakePhone(state="absent")))
    rc = main(["bench", "--device", "adb:R58M123", "--student", str(paths[1]), "--workloads", "fixed",
               "--out", str(tmp_path / "r")])
    assert rc == 2 and "connect it with USB debugging" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_device_run_writes_the_report(bundles, tmp_path, monkeypatch, capsys):
    paths, dev = bundles
    phone = FakePhone()
    monkeypatch.setattr(Adb, "_subprocess", staticmethod(phone))
    monkeypatch.setattr(android.time, "sleep", lambda s: None)
    rc = main(["bench", "--device", "adb", "--student", str(paths[1]), "--data", str(dev), "--runs", "20",
               "--out", str(tmp_path / "r")])
    assert rc == 0
    report = json.loads((tmp_path / "r" / "bench.json").read_text())
    assert [c[:2] for c in phone.commands][0] == ["adb", "get-state"]  # no serial: the only phone attached
    assert {r["workload"] for r in report["rows"]} == {"fixed", "real"} and (tmp_path / "r" / "bench.png").is_file()


def test_cli_device_refuses_model_dirs_and_bad_device(bundles, tmp_path, capsys):
    paths, _ = bundles
    assert main(["bench", "--device", "ssh:phone", "--student", str(paths[1]), "--out", str(tmp_path / "r")]) == 2
    assert main(["bench", "--device", "adb", "--student", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "adb or adb:SERIAL" in err and "bundles only" in err


def test_adb_not_installed_is_a_clear_error():
    adb = Adb(adb="/nonexistent/adb")
    with pytest.raises(DeviceError, match="platform-tools"):
        adb.check_device()
