"""`tinybert-edge bench --device adb[:SERIAL]`: benchmark bundles on an Android phone through the
demo app's benchmark mode (android_demo, issue #6) and merge its results into the bench report.

For each bundle x thread count x workload:
    adb shell mkdir -p /data/local/tmp/tinybert-edge && adb shell rm -rf /data/local/tmp/tinybert-edge/<name>
    adb push BUNDLE /data/local/tmp/tinybert-edge/                (once per bundle; into the parent)
    adb push eval.tsv /data/local/tmp/tinybert-edge/eval.tsv     (once, when --data is given)
    adb shell rm -f <results>
    adb shell am start -W -S -n org.tinybertedge.demo/.BenchmarkActivity --es model DIR --ei threads N
        --ei iterations N --ei warmup N --es workload fixed|real [--es data FILE] --es out <results>
    adb shell test -f <results>                                   (polled until the app has written it)
    adb pull <results> LOCAL

The app writes its results (schema tinybert-edge/bench-device v1, made by the core's
BenchmarkRunner) to its external files directory, atomically, so its existence means it is
complete. `device_row` turns one into a row of the tinybert-edge/bench report.
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import subprocess
import tempfile
import time
from pathlib import Path, PurePosixPath

from tinybert_edge.errors import KitError
from tinybert_edge.schema import SchemaError, validate
from tinybert_edge.taskfiles import iter_task_examples

from tinybert_edge.converters.bundle import load_bundle
from .harness import SCHEMA, SCHEMA_VERSION, Target, add_ratios, machine_info

DEVICE_SCHEMA = "tinybert-edge/bench-device"
DEVICE_SCHEMA_VERSION = 1
PACKAGE = "org.tinybertedge.demo"
ACTIVITY = f"{PACKAGE}/.BenchmarkActivity"
DEVICE_DIR = "/data/local/tmp/tinybert-edge"
RESULTS_DIR = f"/sdcard/Android/data/{PACKAGE}/files"

_RESULT_FIELDS = ("backend", "quantization", "load_s", "first_inference_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                  "std_ms", "trimmed_mean_ms", "runs", "size_bytes", "mean_input_tokens")


class DeviceError(KitError, RuntimeError):
    """adb is missing, the phone is absent, or the app did not answer; the message says what to do."""


def validate_device_results(doc: dict, where: str = "the app's results") -> None:
    """Check one results document of the app against its JSON Schema (bench-device.schema.json),
    then what a schema cannot say: ordered percentiles and a passed self-test.

    Raises:
        SchemaError: naming the first missing or mistyped field, or the failed check.
    """
    validate("bench-device", doc, where)
    r = doc["result"]
    if r["status"] == "ok" and not r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]:
        raise SchemaError(f"{where}: result percentiles are not ordered p50 <= p90 <= p99")
    test = doc.get("self_test")
    if r["status"] == "ok" and test is not None and not test["passed"]:
        raise SchemaError(f"{where}: the on-device self-test failed ({test.get('message', 'outputs differ')}); "
                          "its timings are refused")


def device_row(doc: dict, *, name: str, role: str = "student", path: str | None = None) -> dict:
    """One row of the tinybert-edge/bench report from one validated app results document."""
    validate_device_results(doc)
    r, s = doc["result"], doc["settings"]
    row = {"name": name, "kind": "bundle", "role": role, "path": path, "threads": s["threads"],
           "workload": s["workload"], "device": doc["device"]}
    if r["status"] != "ok":
        return {**row, "status": "failed", "reason": r["reason"]}
    row.update({k: r[k] for k in _RESULT_FIELDS}, status="ok", params=None,
               # PSS (Debug.getPss) is the phone's closest figure to the host rows' peak RSS
               peak_rss_mb=r.get("peak_pss_mb", float("nan")), memory_metric="pss")
    if "accuracy" in r:
        row["accuracy"], row["accuracy_examples"] = r["accuracy"], r["accuracy_examples"]
    return row


class Adb:
    """Builds and runs the adb commands of one phone. `run` is injectable: tests record commands
    and answer them the way a phone would (no phone exists on CI).

    Args:
        serial: adb serial (None: the only device attached).
        adb: the adb executable.
        run: callable(argv list) -> (returncode, stdout); default runs it with subprocess.
    """

    def __init__(self, serial: str | None = None, adb: str = "adb", run=None):
        self.serial = serial
        self.adb = adb
        self._run = run or self._subprocess

    @staticmethod
    def _subprocess(argv: list[str]) -> tuple[int, str]:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise DeviceError(f"{argv[0]} not found; install Android platform-tools and put adb on PATH") from None
        return p.returncode, (p.stdout + p.stderr)

    def base(self) -> list[str]:
        return [self.adb] + (["-s", self.serial] if self.serial else [])

    def call(self, *args: str, what: str) -> str:
        rc, out = self._run(self.base() + list(args))
        if rc != 0:
            raise DeviceError(f"{what} failed (adb exit {rc}): {out.strip()[-300:]}")
        return out

    def shell(self, command: str, what: str) -> str:
        return self.call("shell", command, what=what)

    def check_device(self) -> None:
        rc, out = self._run(self.base() + ["get-state"])
        if rc != 0 or out.strip() != "device":
            who = f"phone {self.serial}" if self.serial else "no phone"
            raise DeviceError(f"{who} is not ready ({out.strip()[-120:] or 'absent'}); connect it with USB debugging "
                              "on and accept the computer's key, then check `adb devices`")

    def push(self, local: Path, remote: str) -> None:
        """Copy a file or a bundle folder to `remote` on the phone, replacing an older copy.

        `adb push DIR dest` nests DIR inside dest when dest already exists (a second push would
        leave the stale bundle in place and a new one at dest/DIR), so a folder is pushed into the
        parent after its old copy is removed.
        """
        parent = str(PurePosixPath(remote).parent)
        self.shell(f"mkdir -p {shlex.quote(parent)}", what="creating the bundle folder")
        if local.is_dir():
            self.shell(f"rm -rf {shlex.quote(remote)}", what="removing the old copy of the bundle")
            self.call("push", str(local), parent + "/", what=f"pushing {local}")
        else:
            self.call("push", str(local), remote, what=f"pushing {local}")

    def start_command(self, *, model: str, threads: int, iterations: int, warmup: int, workload: str, out: str,
                      data: str | None) -> str:
        """The `am start` line of the benchmark mode (intent extras as BenchmarkActivity reads them)."""
        parts = ["am", "start", "-W", "-S", "-n", ACTIVITY, "--es", "model", model, "--ei", "threads", str(threads),
                 "--ei", "iterations", str(iterations), "--ei", "warmup", str(warmup), "--es", "workload", workload,
                 "--es", "out", out]
        if data:
            parts += ["--es", "data", data]
        return " ".join(shlex.quote(p) for p in parts)

    def benchmark(self, *, model: str, threads: int, iterations: int, warmup: int, workload: str,
                  data: str | None, timeout: float = 900, poll: float = 2.0) -> dict:
        """Run one benchmark on the phone and return its results document."""
        out = f"{RESULTS_DIR}/bench-{int(time.time() * 1000)}.json"
        self.shell(f"rm -f {shlex.quote(out)}", what="clearing old results")
        self.shell(self.start_command(model=model, threads=threads, iterations=iterations, warmup=warmup,
                                      workload=workload, out=out, data=data), what="starting the benchmark mode")
        deadline = time.monotonic() + timeout
        while True:
            rc, _ = self._run(self.base() + ["shell", f"test -f {shlex.quote(out)}"])
            if rc == 0:
                break
            if time.monotonic() > deadline:
                raise DeviceError(f"the app wrote no results in {timeout:.0f} s; is {PACKAGE} installed "
                                  "(android_demo/README.md) and its screen awake?")
            time.sleep(poll)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "result.json"
            self.call("pull", out, str(local), what="pulling the results")
            try:
                return json.loads(local.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise DeviceError(f"the app's results file is not JSON ({e})") from None


def _eval_tsv(data: str, max_examples: int | None) -> str:
    """The eval file in the app's format: label<TAB>text[<TAB>pair] per line, no header."""
    lines = []
    for ex in iter_task_examples(data):
        if max_examples and len(lines) >= max_examples:
            break
        clean = [str(x).replace("\t", " ").replace("\n", " ") for x in (ex.label, ex.text)]
        if ex.text_pair is not None:
            clean.append(ex.text_pair.replace("\t", " ").replace("\n", " "))
        lines.append("\t".join(clean))
    return "\n".join(lines) + "\n"


def run_device_bench(bundles: list[tuple[str, str, str]], adb: Adb, *, threads: list[int], workloads: list[str],
                     runs: int, warmup: int, data: str | None = None, max_examples: int | None = None,
                     progress=None, poll: float = 2.0) -> dict:
    """Benchmark bundles on the phone; returns a tinybert-edge/bench report.

    Args:
        bundles: (row name, role, bundle directory) triples.
        adb: the phone.
        threads, workloads, runs, warmup, data, max_examples: as `tinybert-edge bench`.

    Raises:
        DeviceError: adb missing, phone absent, the app not answering.
        converters.bundle.BundleError: a bundle is broken (checked before anything is pushed).
    """
    for _, _, b in bundles:
        load_bundle(b)  # verified here first: a broken bundle costs no phone time
    adb.check_device()
    remote = {}
    for name, _, b in bundles:
        remote[b] = f"{DEVICE_DIR}/{Path(b).name}"
        adb.push(Path(b), remote[b])
    remote_data = None
    if data:
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "eval.tsv"
            f.write_text(_eval_tsv(data, max_examples), encoding="utf-8")
            remote_data = f"{DEVICE_DIR}/eval.tsv"
            adb.push(f, remote_data)
    rows, plan = [], [(b, n, w) for w in workloads for n in threads for b in bundles]
    for i, ((name, role, b), n, w) in enumerate(plan):
        doc = adb.benchmark(model=remote[b], threads=n, iterations=runs, warmup=warmup, workload=w,
                            data=remote_data, poll=poll)
        try:
            row = device_row(doc, name=name, role=role, path=b)
        except SchemaError as e:
            row = {"name": name, "kind": "bundle", "role": role, "path": b, "threads": n, "workload": w,
                   "status": "failed", "reason": f"the app's results do not match {DEVICE_SCHEMA}: {e}"}
        rows.append(row)
        if progress:
            progress(i + 1, len(plan), row)
    add_ratios(rows, [Target(name, "bundle", b, role) for name, role, b in bundles])
    device = next((r["device"] for r in rows if "device" in r), {})
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": device.get("soc") or device.get("model") or "android device",
                        "arch": device.get("abi", "?"), "cores": device.get("cores"), "isa": [],
                        "os": f"Android SDK {device.get('android_sdk')}", "python": None,
                        "versions": device.get("versions", {}), "device": device, "host": machine_info()},
            "settings": {"seq_len": None, "data": data, "warmup": warmup, "runs": runs, "max_examples": max_examples,
                         "tokenizer": None, "workloads": workloads, "threads": threads,
                         "device": f"adb:{adb.serial}" if adb.serial else "adb"},
            "rows": rows}
