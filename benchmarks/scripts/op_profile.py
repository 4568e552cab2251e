"""Per-operator profiles of exported bundles: where an ExecuTorch .pte and a LiteRT .tflite of the
same student spend one inference (issue #14 item 1: ExecuTorch int8 up to 2x slower than LiteRT
int8 on some CPUs).

Usage:
    python -m benchmarks.scripts.op_profile --bundle DIR [--bundle DIR ...] [--seq-len 128] \
        [--runs 20] [--threads 1] [--out benchmarks/results/op_profile]

Writes op_profile.json and op_profile.md under --out. For every bundle: the median end-to-end
latency through the kit's own runner (what `tinybert-edge bench` times), then one row per operator
type with its count, median ms per inference and share of the total, and a side-by-side table by
category (linear, attention matmul, layer norm, copies, ...) across the bundles.

The two runtimes cannot be measured the same way, and the tables say which way each row was got:

  ExecuTorch (.pte), in situ. The program is loaded with an ETDump event tracer
  (`_load_for_executorch(..., enable_etdump=True)`), run, and the dump read back with
  `executorch.devtools.Inspector`. Every instruction is timed where it ran: an OPERATOR_CALL is a
  portable kernel outside the delegate (framework tax included), a DELEGATE_CALL one call into
  XNNPACK, and the XNNPACK profiler's own events split a delegate call into its operators (XNNPACK
  reports whole microseconds, so what sub-microsecond operators cost lands in the delegate call's
  remainder). What a delegate call costs beyond its operators is a row of its own,
  and so is what the run costs outside every instruction (input copies, the Python binding).

  LiteRT (.tflite), each operator in isolation. ai-edge-litert 2.3.0's Python Interpreter has no
  per-operator profiler (no profiler hook in interpreter.py or its pybind wrapper; the C profiler
  in libLiteRt.so belongs to the CompiledModel API and is not reachable from Python). So every
  operator of the signature's subgraph is cut out into a one-operator model (its constant inputs
  kept, its other inputs fed the values they had in a real run of the whole model) and timed with
  the same Interpreter settings as the kit's runner (default XNNPACK delegate, --threads). The
  cost of an empty invoke is subtracted. The sum of these isolated costs is not the in-situ total
  (no cross-operator fusion or cache reuse, one delegate partition per operator); the difference
  is its own row, "not attributed (in-situ total - isolated ops)", and can be negative.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tinybert_edge.errors import KitError

# bundle format -> how it is profiled; mediapipe bundles are .tflite files run by LiteRT too
PROFILERS = {"executorch": "executorch", "tflite": "litert", "mediapipe": "litert"}
WARMUP = 3  # untimed runs first: the first ones pay lazy setup (XNNPACK weight packing, allocations)

OVERHEAD_DELEGATE = "delegate call overhead (beyond its operators)"
OVERHEAD_RUNTIME = "runtime between instructions (Method::execute outside them)"
OVERHEAD_BINDING = "Python binding + input/output copies (outside Method::execute)"
NOT_ATTRIBUTED = "not attributed (in-situ total - isolated ops)"

OVERHEAD_ROWS = (OVERHEAD_DELEGATE, OVERHEAD_RUNTIME, OVERHEAD_BINDING, NOT_ATTRIBUTED)

# (category, substrings of a lower-cased operator name), first match wins; the order matters
# (e.g. "batch matrix multiply" before "multiply", "expand_copy" before "embedding")
CATEGORIES = [
    ("overhead", ()),  # the rows in OVERHEAD_ROWS, by name
    ("attention matmul", ("batch matrix multiply", "batch_matmul", "bmm")),
    ("linear (GEMM)", ("fully connected", "fully_connected", "addmm", "linear", "mm.")),
    ("softmax", ("softmax",)),
    ("layer norm", ("layer_norm", "layernorm", "mean", "squared_difference", "rsqrt")),
    ("embedding lookup", ("embedding", "gather")),
    ("quantize / convert", ("convert", "quantize", "qdu8)", "qd8)")),
    ("copies / layout", ("copy", "reshape", "transpose", "expand", "slice", "select", "squeeze", "view",
                         "permute", "cast", "dim_order", "concat", "pack")),
    ("activation", ("gelu", "tanh", "erf", "sigmoid", "relu")),
    ("elementwise", ("multiply", "add", "subtract", "divide", "mul", "sub", "div", "square", "max", "min")),
]


class OpProfileError(KitError):
    """A bundle cannot be profiled (unsupported format, a length it does not have, a runtime failure)."""


def category(op: str) -> str:
    """The coarse category of an operator name, to compare runtimes whose operators differ.

    Args:
        op: an operator name as a profile row shows it (ExecuTorch portable kernel, XNNPACK
            operator or LiteRT builtin).

    Returns:
        One of the CATEGORIES names, or "other".
    """
    if op in OVERHEAD_ROWS:
        return "overhead"
    name = op.lower()
    for cat, keys in CATEGORIES:
        if any(k in name for k in keys):
            return cat
    return "other"


def synthetic_row(bundle, seq_len: int | None) -> tuple[list[int], list[int], int]:
    """A full-length input row for the bundle: [CLS] + ordinary word-piece ids + [SEP], no padding
    inside the asked length (the worst case a classifier sees at that length).

    Args:
        bundle: a loaded Bundle.
        seq_len: tokens in the row; None for the bundle's longest length.

    Returns:
        (ids, type ids, the padded length the bundle runs it at).

    Raises:
        OpProfileError: seq_len is longer than the bundle accepts or shorter than 2.
    """
    max_len = bundle.policy.max_len
    n = max_len if seq_len is None else seq_len
    if n > max_len or n < 2:
        raise OpProfileError(f"{bundle.path}: --seq-len {n} is outside what the bundle takes (2..{max_len}); "
                             f"pass --seq-len {max_len} or export a bundle with --seq-len {n}")
    tok = bundle.metadata["tokenizer"]
    specials = {tok[k] for k in ("pad_id", "unk_id", "cls_id", "sep_id", "mask_id")}
    words = [i for i in range(tok["vocab_size"]) if i not in specials] or [tok["unk_id"]]
    # deterministic, varied ids: every run of every runtime sees the same input
    ids = [tok["cls_id"]] + [words[(7 * i) % len(words)] for i in range(n - 2)] + [tok["sep_id"]]
    return ids, [0] * n, bundle.policy.pad_length(n)


def end_to_end_ms(bundle, row, runs: int, threads: int) -> list[float]:
    """Per-run latency (ms) of one row through the kit's runner for the bundle's format, after
    warm-up: the number `tinybert-edge bench` would show, without any profiler attached.

    Args:
        bundle: a loaded Bundle.
        row: (ids, type ids) as synthetic_row gives them.
        runs: timed runs.
        threads: runtime threads.

    Returns:
        runs latencies in ms.
    """
    runner = bundle.runner(threads=threads)
    runner.warm_up(row)
    for _ in range(WARMUP - 1):
        runner.run_row(*row)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run_row(*row)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def _rows_from_runs(per_run: list[dict], counts: dict) -> list[dict]:
    """One row per (op, where) key: its median over runs of the per-run total. Medians, not means:
    the host is shared and a few runs are slowed by other work."""
    keys = sorted({k for r in per_run for k in r})
    return [{"op": k[0], "where": k[1], "count": counts.get(k, 0),
             "ms": float(np.median([r.get(k, 0.0) for r in per_run]))} for k in keys]


def _strip_instance(name: str) -> str:
    """XNNPACK names each operator instance 'Fully Connected (...) GEMM #3': keep the type."""
    return re.sub(r"\s*#\d+$", "", name)


def _kernel_names(pte: Path, method: str) -> dict[int, str]:
    """Instruction id -> 'namespace::op.overload' of each kernel call in the method's program.

    ETDump names a portable kernel only through a 'native_call_<op>' event, which prim ops
    (executorch_prim::et_view of a dynamic-shape program, sym_size) do not log; the program's own
    instruction table names every one. Best effort: {} when the installed executorch cannot
    read the file (the rows then fall back to the native_call names).
    """
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary
        from executorch.exir.schema import KernelCall

        plans = deserialize_pte_binary(pte.read_bytes()).program.execution_plan
        plan = next(p for p in plans if p.name == method)
        names = {}
        for i, ins in enumerate(plan.chains[0].instructions):
            if isinstance(ins.instr_args, KernelCall):
                op = plan.operators[ins.instr_args.op_index]
                names[i] = f"{op.name}.{op.overload}" if op.overload else op.name
        return names
    except Exception:  # noqa: BLE001 - a private reader; naming is a convenience, never a failure
        return {}


def profile_executorch(bundle, row, runs: int, threads: int) -> dict:
    """Time every instruction of a .pte in situ with ETDump and the devtools Inspector.

    Args:
        bundle: a loaded executorch Bundle.
        row: (ids, type ids) from synthetic_row.
        runs: timed runs (after WARMUP untimed ones).
        threads: ExecuTorch thread-pool size.

    Returns:
        {"method", "profiled_total_ms", "untraced_ms", "rows", "delegate_calls", "portable_calls", "notes"};
        rows are {"op", "where", "count", "ms"} with ms the median per inference, and sum (within
        the run-to-run noise of medians) to profiled_total_ms.

    Raises:
        OpProfileError: the runtime or the devtools are missing, or the dump has no run in it.
    """
    import torch  # the ExecuTorch Python runtime takes torch tensors

    from tinybert_edge.converters.executorch_runtime import ExecuTorchRunner, portable_lib
    from tinybert_edge.converters.runtime import pad_row, quiet_native_output

    rt = portable_lib()
    try:
        from executorch.devtools import Inspector
    except ImportError as e:
        raise OpProfileError(f"executorch.devtools is not importable ({e}); pip install executorch") from None
    # the kit's runner checks the program and picks the method exactly as bench does
    method = ExecuTorchRunner(bundle.artifact, bundle.policy, threads=threads).signature_for(row[2])
    with quiet_native_output("loading the program with ETDump"):
        rt._unsafe_reset_threadpool(threads)  # it logs a line to stderr
        module = rt._load_for_executorch(str(bundle.artifact), enable_etdump=True)
    if not module.has_etdump():
        raise OpProfileError("this executorch build has no ETDump support (has_etdump() is False); "
                             "install the executorch wheel from PyPI, which has it")
    inputs = [torch.from_numpy(a) for a in pad_row(row[0], row[1], row[2], bundle.metadata["tokenizer"]["pad_id"])]
    # the same loop without the event tracer: what tracing itself costs
    with quiet_native_output("loading the program"):
        plain = rt._load_for_executorch(str(bundle.artifact))
    for _ in range(WARMUP):
        plain.run_method(method, inputs)
    unprofiled = []
    for _ in range(runs):
        t0 = time.perf_counter()
        plain.run_method(method, inputs)
        unprofiled.append(1000 * (time.perf_counter() - t0))
    del plain
    with tempfile.TemporaryDirectory(prefix="op-profile-") as tmp:
        for _ in range(WARMUP):
            module.run_method(method, inputs)
        # writing the dump also empties it, so the timed runs below are the only ones in the next one
        module.write_etdump_result_to_file(str(Path(tmp) / "warmup.etdp"))
        wall = []
        for _ in range(runs):
            t0 = time.perf_counter()
            module.run_method(method, inputs)
            wall.append(1000 * (time.perf_counter() - t0))
        dump = Path(tmp) / "timed.etdp"
        module.write_etdump_result_to_file(str(dump))
        with quiet_native_output("reading the ETDump"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Output Buffer not found": no tensor dump asked for
            blocks = Inspector(etdump_path=str(dump)).event_blocks
    execute = [b for b in blocks if b.name == "Execute"]
    if not execute or not execute[0].events:
        raise OpProfileError(f"{bundle.artifact}: the ETDump holds no Execute events; "
                             "report the executorch version")
    partitioner = str(bundle.metadata.get("export", {}).get("delegate", "xnnpack"))  # e.g. "XnnpackPartitioner"
    delegate_name = "XNNPACK" if "xnnpack" in partitioner.lower() else "delegate"
    per_run = [defaultdict(float) for _ in range(runs)]
    counts: dict = defaultdict(int)
    instr = np.zeros(runs)
    children: list = []  # delegate-internal events logged before the DELEGATE_CALL that holds them
    kernel = None  # 'native_call_<op>' is logged just before its OPERATOR_CALL
    ignored = set()
    execute_ms = None  # Method::execute: the whole method, inside the binding's wall time
    delegate_calls = portable_calls = 0
    names = _kernel_names(bundle.artifact, method)

    def times(event) -> np.ndarray:
        raw = list(event.perf_data.raw) if event.perf_data is not None else []
        if len(raw) < runs:
            raise OpProfileError(f"{bundle.artifact}: event {event.name!r} was recorded {len(raw)} times in "
                                 f"{runs} runs; the method's control flow varies, profile a fixed-length bundle")
        return np.asarray(raw[-runs:], dtype=np.float64)

    for ev in execute[0].events:
        if ev.is_delegated_op:
            children.append((_strip_instance(ev.name), times(ev)))
        elif ev.name == "DELEGATE_CALL":
            call = times(ev)
            inside = np.zeros(runs)
            for name, t in children:
                key = (name, delegate_name)
                counts[key] += 1
                inside += t
                for r in range(runs):
                    per_run[r][key] += t[r]
            key = (OVERHEAD_DELEGATE, delegate_name)
            counts[key] += 1
            for r in range(runs):
                per_run[r][key] += max(call[r] - inside[r], 0.0)
            instr += call
            children = []
            delegate_calls += 1
        elif ev.name.startswith("native_call_"):
            kernel = ev.name[len("native_call_"):]
        elif ev.name == "OPERATOR_CALL":
            # OPERATOR_CALL = the kernel + the framework tax of calling it: the row's cost
            call = times(ev)
            name = names.get(getattr(ev, "_instruction_id", None)) or kernel or "unnamed kernel"
            key = (name, "portable (outside delegate)")
            counts[key] += 1
            for r in range(runs):
                per_run[r][key] += call[r]
            instr += call
            kernel = None
            portable_calls += 1
        elif ev.name == "Method::execute":
            execute_ms = times(ev)
        else:
            ignored.add(ev.name)
    # what no instruction accounts for: the method's own loop, then the Python binding around it
    inner = execute_ms if execute_ms is not None else np.asarray(wall)
    for r in range(runs):
        per_run[r][(OVERHEAD_RUNTIME, "runtime")] = max(inner[r] - instr[r], 0.0)
        if execute_ms is not None:
            per_run[r][(OVERHEAD_BINDING, "runtime")] = max(wall[r] - execute_ms[r], 0.0)
    counts[(OVERHEAD_RUNTIME, "runtime")] = 1
    if execute_ms is not None:
        counts[(OVERHEAD_BINDING, "runtime")] = 1
    notes = [f"in situ: ETDump events of the timed runs (ExecuTorch devtools Inspector); run_method with prepared "
             f"inputs takes {np.median(wall):.3f} ms traced, {np.median(unprofiled):.3f} ms untraced; the end-to-end "
             "total also has the kit runner's Python input preparation"]
    if ignored:
        notes.append("events not counted: " + ", ".join(sorted(ignored)))
    outside = bundle.metadata.get("export", {}).get("ops_outside_delegate")
    if outside:
        notes.append("outside the delegate at export (metadata.json): "
                     + ", ".join(f"{k} x{v}" for k, v in sorted(outside.items())))
    return {"method": method, "profiled_total_ms": float(np.median(wall)), "untraced_ms": float(np.median(unprofiled)),
            "rows": _rows_from_runs(per_run, counts), "delegate_calls": delegate_calls,
            "portable_calls": portable_calls, "notes": notes}


def _is_constant(model, tensor) -> bool:
    buf = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def single_op_model(model, subgraph: int, op_index: int) -> tuple[bytes, list[int]]:
    """A .tflite holding one operator of `model`: its constant inputs kept (weights, shapes), its
    other inputs made the model's inputs, its outputs the model's outputs.

    Args:
        model: a schema ModelT (ai_edge_litert.tools.flatbuffer_utils.read_model_from_bytearray).
        subgraph: the subgraph index of the operator.
        op_index: its index in that subgraph.

    Returns:
        (the flatbuffer bytes, the original tensor index of each new model input, in input order).

    Raises:
        OpProfileError: the operator calls other subgraphs (control flow), which cannot be cut out.
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    sg = model.subgraphs[subgraph]
    op = copy.copy(sg.operators[op_index])
    if op.builtinOptions is not None and any(a.lower().endswith("subgraphindex") or a.lower().endswith(
            "subgraph_index") for a in vars(op.builtinOptions)):
        raise OpProfileError(f"operator {op_index} of subgraph {subgraph} calls other subgraphs; "
                             "control flow cannot be profiled op by op")
    new = fb.ModelT()
    new.version = model.version
    new.operatorCodes = model.operatorCodes
    new.buffers = [fb.BufferT()]  # buffer 0: the empty one every non-constant tensor points at
    new.description = "op_profile: one operator"
    tensors, remap, feeds = [], {}, []
    inputs, intermediates, outputs = list(op.inputs or []), list(op.intermediates or []), list(op.outputs or [])

    def take(i: int, fed: bool = False) -> int:
        if i < 0:  # an omitted optional input stays omitted
            return i
        if i not in remap:
            t = copy.copy(sg.tensors[i])
            if _is_constant(model, t):
                new.buffers.append(model.buffers[t.buffer])
                t.buffer = len(new.buffers) - 1
            else:
                t.buffer = 0
                if fed:
                    feeds.append(i)
            remap[i] = len(tensors)
            tensors.append(t)
        return remap[i]

    op.inputs = [take(i, fed=True) for i in inputs]
    op.intermediates = [take(i) for i in intermediates] or None
    op.outputs = [take(i) for i in outputs]
    sub = fb.SubGraphT()
    sub.tensors = tensors
    sub.operators = [op]
    sub.inputs = [remap[i] for i in feeds]
    sub.outputs = list(op.outputs)
    sub.name = "op"
    new.subgraphs = [sub]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(new)), feeds


def _empty_model() -> bytes:
    """A .tflite with one tensor that is both input and output and no operator: what one invoke
    costs with no work, subtracted from every isolated operator's time."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    m = fb.ModelT()
    m.version = 3
    m.operatorCodes = []
    m.buffers = [fb.BufferT()]
    t = fb.TensorT()
    t.shape, t.type, t.buffer, t.name = [1], fb.TensorType.FLOAT32, 0, "x"
    sub = fb.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs, sub.name = [t], [], [0], [0], "empty"
    m.subgraphs = [sub]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def _invoke_ms(interp, runs: int) -> np.ndarray:
    """Per-run ms of interp.invoke() after WARMUP untimed invokes (inputs already set)."""
    for _ in range(WARMUP):
        interp.invoke()
    out = np.empty(runs)
    for r in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        out[r] = 1000 * (time.perf_counter() - t0)
    return out


def profile_litert(bundle, row, runs: int, threads: int, total_ms: float) -> dict:
    """Time every operator of a .tflite signature in isolation (see the module docstring for why).

    Args:
        bundle: a loaded tflite or mediapipe Bundle.
        row: (ids, type ids, padded length) from synthetic_row.
        runs: timed invokes per operator.
        threads: interpreter threads (the kit's runner passes the same).
        total_ms: the in-situ median latency (end_to_end_ms), for the not-attributed row.

    Returns:
        {"method", "invoke_overhead_ms", "rows", "ops", "delegated_ops", "notes"}; rows as
        profile_executorch's, their ms summing exactly to total_ms through the not-attributed row.

    Raises:
        OpProfileError: the model's signature or an operator's inputs cannot be reproduced.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ai_edge_litert.tools import flatbuffer_utils

    from tinybert_edge.converters.litert_runtime import LiteRTRunner
    from tinybert_edge.converters.runtime import pad_row, quiet_native_output

    signature = LiteRTRunner(bundle.artifact, bundle.policy, threads=threads).signature_for(row[2])
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(bundle.artifact.read_bytes()))
    keys = {(d.signatureKey.decode() if isinstance(d.signatureKey, bytes) else d.signatureKey): d.subgraphIndex
            for d in (model.signatureDefs or [])}
    subgraph = keys.get(signature)
    if subgraph is None:
        raise OpProfileError(f"{bundle.artifact} has no signature {signature!r} in its flatbuffer; export it again")
    arrays = pad_row(row[0], row[1], row[2], bundle.metadata["tokenizer"]["pad_id"])
    # one real run of the whole model, every intermediate kept: what each cut-out operator is fed
    # (real values matter: embedding lookups need valid ids, softmax and GELU costs depend on data)
    with quiet_native_output("running the model once with every tensor kept"):
        full = Interpreter(model_path=str(bundle.artifact), num_threads=threads,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                           experimental_preserve_all_tensors=True)
        sig = full.get_signature_runner(signature)
        names = sorted(sig.get_input_details())  # args_0.. in positional order, as LiteRTRunner feeds them
        sig(**{n: a.astype(np.int32) for n, a in zip(names, arrays)})

    def interpreter(content: bytes):
        it = Interpreter(model_content=content, num_threads=threads)  # default resolver: XNNPACK, as the kit runs it
        it.allocate_tensors()
        return it

    with quiet_native_output("timing an empty invoke"):
        empty = interpreter(_empty_model())
        empty.set_tensor(empty.get_input_details()[0]["index"], np.zeros([1], np.float32))
    overhead = float(np.median(_invoke_ms(empty, runs)))
    sg = model.subgraphs[subgraph]
    per_op = defaultdict(float)
    counts: dict = defaultdict(int)
    delegated: dict = defaultdict(int)
    for k, op in enumerate(sg.operators):
        name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or f"opcode {op.opcodeIndex}"
        content, feeds = single_op_model(model, subgraph, k)
        try:
            with quiet_native_output(f"loading operator {k} ({name})"):
                it = interpreter(content)
            for new_index, old in zip([d["index"] for d in it.get_input_details()], feeds):
                it.set_tensor(new_index, full.get_tensor(old, subgraph))
            ms = _invoke_ms(it, runs)
        except (ValueError, RuntimeError, KitError) as e:
            raise OpProfileError(f"{bundle.artifact}: operator {k} ({name}) cannot be run on its own "
                                 f"({str(e).splitlines()[0][:200]}); report the model and runtime version") from None
        # the Interpreter lists a DELEGATE node when XNNPACK took the operator (a private but stable
        # accessor; the public API does not say which nodes a delegate claimed)
        in_xnnpack = any(d["op_name"] == "DELEGATE" for d in it._get_ops_details())
        counts[name] += 1
        delegated[name] += int(in_xnnpack)
        per_op[name] += max(float(np.median(ms)) - overhead, 0.0)
    rows = []
    for name in sorted(per_op):
        d, n = delegated[name], counts[name]
        where = "XNNPACK" if d == n else "builtin (outside XNNPACK)" if d == 0 else f"XNNPACK {d}/{n}"
        rows.append({"op": name, "where": where, "count": n, "ms": per_op[name]})
    rows.append({"op": NOT_ATTRIBUTED, "where": "runtime", "count": 1, "ms": total_ms - sum(per_op.values())})
    n_ops = len(sg.operators)
    notes = [f"isolated: each of the {n_ops} operators of subgraph {subgraph} run alone (median of {runs} invokes) "
             f"minus an empty invoke ({overhead * 1000:.1f} us)",
             f"{sum(delegated.values())}/{n_ops} operators are taken by the XNNPACK delegate when run alone"]
    return {"method": signature, "invoke_overhead_ms": overhead, "rows": rows, "ops": n_ops,
            "delegated_ops": sum(delegated.values()), "notes": notes}


def profile_bundle(path: str | Path, seq_len: int | None = 128, runs: int = 20, threads: int = 1) -> dict:
    """Profile one bundle: end-to-end latency and per-operator-type rows.

    Args:
        path: bundle directory (or its zip / metadata.json).
        seq_len: tokens per input (None: the bundle's longest).
        runs: timed runs for every measurement.
        threads: runtime threads.

    Returns:
        {"bundle", "name", "format", "quantization", "method", "seq_len", "padded_len", "total_ms",
        "total_p10_ms", "total_p90_ms", "measure", "rows", ...}; each row {"op", "where", "category",
        "count", "ms", "share"}, sorted by ms, share = ms / the total the rows add up to.

    Raises:
        BundleError: not a bundle, or a corrupted one (the message names the file and the fix).
        OpProfileError: a format this script cannot profile, or a length the bundle does not take.
        ExportError: the bundle's runtime is not installed.
    """
    from tinybert_edge.converters.bundle import load_bundle

    if runs < 1 or threads < 1:
        raise OpProfileError(f"--runs ({runs}) and --threads ({threads}) must be at least 1")
    p = Path(path)
    if not p.exists():
        raise OpProfileError(f"{p} does not exist; pass a bundle directory that `tinybert-edge export` wrote")
    bundle = load_bundle(p)
    kind = PROFILERS.get(bundle.format)
    if kind is None:
        raise OpProfileError(f"{p} is a {bundle.format!r} bundle; op profiles exist for "
                             f"{', '.join(PROFILERS)} bundles only")
    ids, types, length = synthetic_row(bundle, seq_len)
    total = end_to_end_ms(bundle, (ids, types), runs, threads)
    total_ms = float(np.median(total))
    if kind == "executorch":
        prof = profile_executorch(bundle, (ids, types, length), runs, threads)
        denominator = prof["profiled_total_ms"]  # the rows add up to the run they were measured in
        measure = "in situ (ETDump)"
    else:
        prof = profile_litert(bundle, (ids, types, length), runs, threads, total_ms)
        denominator = total_ms
        measure = "isolated operators (no per-op profiler in LiteRT's Python Interpreter)"
    rows = prof.pop("rows")
    for r in rows:
        r["category"] = category(r["op"])
        r["share"] = r["ms"] / denominator if denominator > 0 else 0.0
    rows.sort(key=lambda r: -r["ms"])
    return {"bundle": str(p), "name": p.name, "format": bundle.format, "profiler": kind,
            "quantization": bundle.metadata["quantization"]["name"], "seq_len": len(ids), "padded_len": length,
            "threads": threads, "runs": runs, "total_ms": total_ms,
            "total_p10_ms": float(np.percentile(total, 10)), "total_p90_ms": float(np.percentile(total, 90)),
            "rows_total_ms": denominator, "measure": measure, "rows": rows, **prof}


def by_category(profiles: list[dict]) -> list[dict]:
    """ms per inference by category for each profile: the side-by-side view across runtimes.

    Args:
        profiles: profile_bundle results.

    Returns:
        [{"category", "<bundle name>": ms, ...}] in CATEGORIES order, categories no bundle has left out.
    """
    order = [c for c, _ in CATEGORIES] + ["other"]
    sums = {p["name"]: defaultdict(float) for p in profiles}
    for p in profiles:
        for r in p["rows"]:
            sums[p["name"]][r["category"]] += r["ms"]
    out = []
    for c in order[1:] + order[:1]:  # overhead last
        if any(c in s for s in sums.values()):
            out.append({"category": c, **{name: s.get(c, 0.0) for name, s in sums.items()}})
    return out


def render_markdown(report: dict) -> str:
    """The report as Markdown: a by-category comparison, then one table per bundle.

    Args:
        report: what main writes to op_profile.json.

    Returns:
        Markdown text.
    """
    profiles = report["profiles"]
    machine = report["machine"]
    versions = machine.get("versions", {})
    md = [f"# Per-operator profile ({report['created']})", "",
          f"{machine.get('cpu')} ({machine.get('arch')}), {report['threads']} thread(s), {report['runs']} runs, "
          f"executorch {versions.get('executorch')}, ai-edge-litert {versions.get('ai-edge-litert')}. "
          "ms = median per inference.", ""]
    md += ["| bundle | runtime | length | total ms (p10-p90) | measured as |", "|---|---|---:|---:|---|"]
    for p in profiles:
        md.append(f"| {p['name']} | {p['profiler']} ({p['quantization']}) | {p['padded_len']} | "
                  f"{p['total_ms']:.3f} ({p['total_p10_ms']:.3f}-{p['total_p90_ms']:.3f}) | {p['measure']} |")
    if len(profiles) > 1:
        names = [p["name"] for p in profiles]
        md += ["", "## By category (ms per inference)", "", "| category | " + " | ".join(names) + " |",
               "|---|" + "---:|" * len(names)]
        for c in report["by_category"]:
            md.append(f"| {c['category']} | " + " | ".join(f"{c[n]:.3f}" for n in names) + " |")
        md.append("")
        md.append("LiteRT has no LayerNorm operator: its layer norms are MEAN/SQUARED_DIFFERENCE/RSQRT (counted "
                  "as layer norm) plus MUL/ADD/SUB (counted as elementwise).")
    for p in profiles:
        md += ["", f"## {p['name']}", "",
               f"{p['format']} {p['quantization']}, method/signature `{p['method']}`, {p['seq_len']} tokens padded to "
               f"{p['padded_len']}; end-to-end {p['total_ms']:.3f} ms; the rows add up to "
               f"{sum(r['ms'] for r in p['rows']):.3f} ms of {p['rows_total_ms']:.3f} ms"
               + (" (the ETDump-traced run_method; medians of per-run values do not add exactly)"
                  if p["profiler"] == "executorch" else "") + ".", ""]
        if p["profiler"] == "executorch":
            md.append(f"Per inference: {p['delegate_calls']} XNNPACK delegate calls, {p['portable_calls']} portable "
                      "kernel calls outside the delegate.")
            md.append("")
        md += ["| op | where | category | count | ms | share |", "|---|---|---|---:|---:|---:|"]
        for r in p["rows"]:
            md.append(f"| {r['op']} | {r['where']} | {r['category']} | {r['count']} | {r['ms']:.3f} | "
                      f"{100 * r['share']:.1f} % |")
        md += [""] + [f"- {n}" for n in p["notes"]]
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    """Command line: profile each --bundle, write op_profile.json and op_profile.md under --out.

    Args:
        argv: arguments (default sys.argv[1:]).

    Returns:
        0 on success, 2 with one line on stderr for a bad bundle, a bad argument or a runtime failure.
    """
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scripts.op_profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", action="append", required=True, help="bundle directory (repeat to compare)")
    ap.add_argument("--seq-len", type=int, default=128, help="tokens per input (default 128)")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per measurement (default 20)")
    ap.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    ap.add_argument("--out", default="benchmarks/results/op_profile", help="output directory")
    a = ap.parse_args(argv)

    from tinybert_edge.benchmarks.harness import machine_info
    from tinybert_edge.files import write_bytes_atomically, write_json_atomically

    try:
        profiles = []
        for b in a.bundle:
            print(f"profiling {b} ...", file=sys.stderr, flush=True)
            profiles.append(profile_bundle(b, a.seq_len, a.runs, a.threads))
        # two bundles of one name (the same export before and after a change): name them by folder
        seen = [p["name"] for p in profiles]
        for p in profiles:
            if seen.count(p["name"]) > 1:
                p["name"] = f"{Path(p['bundle']).parent.name}/{p['name']}"
    except KitError as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    report = {"benchmark": "op_profile", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info(), "seq_len": a.seq_len, "runs": a.runs, "threads": a.threads,
              "command": "python -m benchmarks.scripts.op_profile " + " ".join(sys.argv[1:] if argv is None else argv),
              "profiles": profiles, "by_category": by_category(profiles)}
    out = Path(a.out)
    write_json_atomically(out / "op_profile.json", report)
    md = render_markdown(report)
    write_bytes_atomically(out / "op_profile.md", md.encode())
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
