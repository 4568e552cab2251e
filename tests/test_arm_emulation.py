"""The ARM check (issue #4): a tiny int8 .tflite bundle run by the aarch64 python3.11 of a Debian
userland under qemu-user gives the host's labels and logits. Needs qemu-user and mmdebstrap
(.ci/run installs them) and Debian's and PyPI's registries the first time (then cached).
The ExecuTorch variant (4.6 GB of aarch64 torch + CUDA libraries) is not run here; its result on
the demo bundles is in BENCHMARKS.md."""

import json
import shutil

import pytest

from tinybert_edge.benchmarks import arm_emulation
from tinybert_edge.cli import main
from conftest import make_tiny_model_dir, sentences, write_tsv


def test_missing_tools_name_the_debian_packages(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(arm_emulation.ArmCheckError, match="apt-get install qemu-user mmdebstrap"):
        arm_emulation.require_tools()


def test_pte_bundle_without_the_flag_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(arm_emulation, "require_tools", lambda: {"qemu": "q", "builder": "mmdebstrap"})
    monkeypatch.setattr(arm_emulation, "build_rootfs", lambda cache, tools: tmp_path)
    monkeypatch.setattr(arm_emulation, "install_wheels", lambda *a, **k: tmp_path)
    b = tmp_path / "b"
    b.mkdir()
    (b / "metadata.json").write_text(json.dumps({"format": "executorch"}))
    with pytest.raises(arm_emulation.ArmCheckError, match="--executorch"):
        arm_emulation.run_check([b], cache=tmp_path, progress=lambda s: None)


def test_guest_sees_an_aarch64_cpu(tmp_path):
    arm_emulation.describe_cpu(tmp_path)
    info = (tmp_path / "proc" / "cpuinfo").read_text()
    assert "CPU part\t: 0xd08" in info and "asimd" in info  # Cortex-A72 with NEON
    assert (tmp_path / "sys/devices/system/cpu/possible").read_text().strip() == "0"


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("qemu-aarch64") or not (shutil.which("mmdebstrap") or shutil.which("debootstrap")),
                    reason="needs qemu-user and mmdebstrap (apt-get install qemu-user mmdebstrap; .ci/run does)")
def test_int8_tflite_bundle_on_emulated_aarch64_matches_the_host(tmp_path, capsys):
    model = make_tiny_model_dir(tmp_path / "student", classifier=True, layers=2, seed=5)
    dev = write_tsv(tmp_path / "dev.tsv", sentences(12, seed=6))
    assert main(["export", "--model", str(model), "--format", "tflite", "--quantize", "int8", "--seq-len", "32",
                 "--buckets", "16,32", "--data", str(dev), "--out", str(tmp_path / "bundles"), "--threshold", "50"]) == 0
    bundle = next((tmp_path / "bundles").iterdir())
    out = tmp_path / "arm"
    rc = arm_emulation.main(["--bundle", str(bundle), "--data", str(dev), "--max-examples", "12", "--out", str(out)])
    report = json.loads((out / "arm_check.json").read_text())
    assert rc == 0 and report["passed"]
    r = report["results"][0]
    assert r["guest_arch"] == "aarch64" and r["n"] == 12
    assert r["label_agreement"] == 1.0 and r["max_abs_diff"] <= r["atol"]
    assert "never ARM speed" in (out / "arm_check.md").read_text()
