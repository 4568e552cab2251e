"""TFLite Model Metadata for MediaPipe Tasks' TextClassifier, written with `flatbuffers` alone.

MediaPipe's TextClassifier (Android, iOS, web, Python) takes a string and returns categories,
with the tokenizer inside the runtime, when the .tflite carries:
- a metadata flatbuffer ("M001") stored inline as the model buffer named "TFLITE_METADATA":
  input tensors named "ids", "mask", "segment_ids" in the model's input order, a BertTokenizer
  input process unit pointing at vocab.txt (VOCABULARY), and an output tensor with labels.txt as
  TENSOR_AXIS_LABELS;
- vocab.txt and labels.txt as an uncompressed (stored) zip appended after the flatbuffer;
- probabilities as output (MediaPipe applies no softmax) and int32 inputs of a fixed length.

Why not a library: tflite-support's writer needs libusb from apt and protobuf 3.20 (which breaks
mediapipe and ai-edge-litert) and drops the weights of litert-torch files, which it cannot read;
mediapipe 1.2.2's own writer does not import from its wheel. The schema classes of the model come
from ai-edge-litert (pure Python); the metadata tables are written field by field, slot numbers
following the field order of the published metadata_schema.fbs (a union takes two slots).
Measured: /work/proto findings in BENCHMARKS.md ("MediaPipe").
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from .runtime import ExportError

METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
# BertTokenizerOptions and SubGraphMetadata.input_process_units appeared in metadata schema 1.1.0
MIN_PARSER_VERSION = "1.1.0"
INPUT_ROLES = ("ids", "mask", "segment_ids")  # the names MediaPipe's BertPreprocessorCalculator looks up
# enum AssociatedFileType, unions ContentProperties and ProcessUnitOptions of metadata_schema.fbs
TENSOR_AXIS_LABELS, VOCABULARY = 2, 5
CONTENT_FEATURE_PROPERTIES, PROCESS_UNIT_BERT_TOKENIZER = 1, 4


class _Metadata:
    """Builds one ModelMetadata flatbuffer."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(4096)

    def _str(self, s: str | None):
        return None if s is None else self.b.CreateString(s)

    def _offsets(self, offsets: list[int]):
        self.b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def _table(self, nslots: int, fields: dict[int, tuple[str, object]]):
        """fields: slot -> ("off", offset) | ("u8", int); None values are left out."""
        self.b.StartObject(nslots)
        for slot, (kind, value) in fields.items():
            if value is None:
                continue
            if kind == "off":
                self.b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:
                self.b.PrependUint8Slot(slot, value, 0)
        return self.b.EndObject()

    def associated_file(self, name: str, ftype: int, description: str):
        # table AssociatedFile { name, description, type, locale, version }
        n, d = self._str(name), self._str(description)
        return self._table(5, {0: ("off", n), 1: ("off", d), 2: ("u8", ftype)})

    def tensor(self, name: str, description: str, *, probabilities: bool = False, files: list[int] | None = None):
        # table TensorMetadata { name, description, dimension_names, content, process_units, stats,
        #                        associated_files }; table Content { content_properties (union), range }
        n, d = self._str(name), self._str(description)
        self.b.StartObject(0)  # FeatureProperties {}
        props = self.b.EndObject()
        content = self._table(3, {0: ("u8", CONTENT_FEATURE_PROPERTIES), 1: ("off", props)})
        stats = None
        if probabilities:  # table Stats { max:[float], min:[float] }
            mx = self.b.CreateNumpyVector(np.asarray([1.0], dtype="<f4"))
            mn = self.b.CreateNumpyVector(np.asarray([0.0], dtype="<f4"))
            stats = self._table(2, {0: ("off", mx), 1: ("off", mn)})
        af = self._offsets(files) if files else None
        return self._table(7, {0: ("off", n), 1: ("off", d), 3: ("off", content), 5: ("off", stats),
                               6: ("off", af)})

    def build(self, *, name: str, description: str, max_seq_len: int, num_labels: int) -> bytes:
        about = {"ids": f"WordPiece token ids, [CLS] ... [SEP], zero-padded to {max_seq_len}.",
                 "mask": "1 for real tokens, 0 for padding.",
                 "segment_ids": "Token type ids (0 for single-sentence input)."}
        inputs = [self.tensor(role, about[role]) for role in INPUT_ROLES]  # matched to inputs by position
        labels = self.associated_file("labels.txt", TENSOR_AXIS_LABELS, f"{num_labels} labels, one per line.")
        outputs = [self.tensor("probability", "Softmax probability of each label.", probabilities=True,
                               files=[labels])]
        vocab = self.associated_file("vocab.txt", VOCABULARY, "WordPiece vocabulary, one token per line.")
        # table BertTokenizerOptions { vocab_file } ; table ProcessUnit { options_type, options }
        unit = self._table(2, {0: ("u8", PROCESS_UNIT_BERT_TOKENIZER),
                               1: ("off", self._table(1, {0: ("off", self._offsets([vocab]))}))})
        # table SubGraphMetadata { name, description, input_tensor_metadata, output_tensor_metadata,
        #                          associated_files, input_process_units, ... }
        sg = self._table(10, {0: ("off", self._str("text_classifier")), 2: ("off", self._offsets(inputs)),
                              3: ("off", self._offsets(outputs)), 5: ("off", self._offsets([unit]))})
        # table ModelMetadata { name, description, version, subgraph_metadata, author, license,
        #                       associated_files, min_parser_version }
        root = self._table(8, {0: ("off", self._str(name)), 1: ("off", self._str(description)),
                               2: ("off", self._str("1")), 3: ("off", self._offsets([sg])),
                               7: ("off", self._str(MIN_PARSER_VERSION))})
        self.b.Finish(root, file_identifier=METADATA_IDENTIFIER)
        return bytes(self.b.Output())


class _AlignedBuffer:
    """Packs a model buffer like the schema's BufferT, but 16-byte aligned as the schema's
    `data (force_align: 16)` asks (the generated Pack ignores it) and copied in one slice."""

    def __init__(self, data):
        self.data = data

    def Pack(self, builder: flatbuffers.Builder):  # noqa: N802 (the flatbuffers object API's name)
        data_off = None
        if self.data is not None and len(self.data):
            payload = np.ascontiguousarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), 16)
            builder.head -= len(payload)
            builder.Bytes[builder.head: builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data_off = builder.EndVector()
        tfl.BufferStart(builder)
        if data_off is not None:
            tfl.BufferAddData(builder, data_off)
        return tfl.BufferEnd(builder)


def _read(raw: bytes):
    """The model as objects, with litert-torch's offset buffers (weights stored after the
    flatbuffer) read back inline: MediaPipe reads the metadata buffer's data() directly."""
    if raw[4:8] != MODEL_IDENTIFIER:
        raise ExportError(f"not a TFLite flatbuffer (identifier {raw[4:8]!r})")
    model = tfl.ModelT.InitFromPackedBuf(raw, 0)
    whole = np.frombuffer(raw, dtype=np.uint8)
    for buf in model.buffers:
        if buf.offset and buf.offset > 1:
            buf.data = whole[buf.offset: buf.offset + buf.size]
        buf.offset = buf.size = 0
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if op.largeCustomOptionsOffset and op.largeCustomOptionsOffset > 1:
                op.customOptions = whole[op.largeCustomOptionsOffset:
                                         op.largeCustomOptionsOffset + op.largeCustomOptionsSize]
            op.largeCustomOptionsOffset = op.largeCustomOptionsSize = 0
    if model.externalBuffers:
        raise ExportError("a .tflite with external weight files cannot carry MediaPipe metadata")
    return model


def _short_tensor_names(model) -> None:
    """Name every intermediate tensor t<index>, keeping the names of each subgraph's inputs and
    outputs. litert-torch names a tensor after its whole module path (often 1 KB; every subgraph
    repeats them), which is about 0.9 MB of a 15 MB student per signature: the bucketed file
    carries one subgraph per bucket. Signatures address tensors by index, MediaPipe's metadata by
    input order, so nothing reads the long names at run time."""
    for sg in model.subgraphs:
        keep = set(sg.inputs) | set(sg.outputs)
        for i, t in enumerate(sg.tensors):
            if i not in keep:
                t.name = f"t{i}".encode()


class _SharedQuantization:
    """Packs a tensor's quantization table once per distinct content and points every equal one at
    it (a flatbuffer may reference one table from many places). Each bucket's subgraph repeats the
    per-channel scales and zero points of every shared int8 weight (the word embeddings alone:
    30,522 rows x 12 bytes), about 0.5 MB per extra signature."""

    def __init__(self, q, cache: dict):
        self.q, self.cache = q, cache

    def _key(self):
        q = self.q

        def arr(v):
            return None if v is None else np.asarray(v).tobytes()

        return (arr(q.scale), arr(q.zeroPoint), arr(q.min), arr(q.max), q.quantizedDimension, q.detailsType,
                id(q.details) if q.details is not None else None)

    def Pack(self, builder: flatbuffers.Builder):  # noqa: N802 (the flatbuffers object API's name)
        key = self._key()
        if key not in self.cache:
            self.cache[key] = self.q.Pack(builder)
        return self.cache[key]


def _share_quantization(model) -> None:
    cache: dict = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.quantization is not None:
                t.quantization = _SharedQuantization(t.quantization, cache)


def _check_inputs(model, max_seq_len: int) -> None:
    for sg in model.subgraphs:
        if len(sg.inputs) != 3:
            raise ExportError(f"a BERT classifier for MediaPipe takes 3 inputs, this one takes {len(sg.inputs)}")
        for i in sg.inputs:
            t = sg.tensors[i]
            if t.type != tfl.TensorType.INT32:
                raise ExportError(f"input {t.name.decode()} is not int32 (MediaPipe feeds int32 only)")
    if len(model.subgraphs) == 1 and [list(map(int, model.subgraphs[0].tensors[i].shape))
                                      for i in model.subgraphs[0].inputs] != [[1, max_seq_len]] * 3:
        raise ExportError(f"the inputs are not [1, {max_seq_len}] (MediaPipe takes the length from their shape)")


def with_metadata(raw: bytes, vocab: str, labels: list[str], max_seq_len: int, *, name: str) -> bytes:
    """The .tflite bytes with MediaPipe TextClassifier metadata and the vocab/labels files attached.

    Args:
        raw: the .tflite litert-torch wrote (inputs ids, mask, type ids; output probabilities).
        vocab: vocab.txt content.
        labels: label names in output order.
        max_seq_len: the inputs' fixed length.
        name: model name recorded in the metadata.

    Returns:
        The new file content (flatbuffer, then a stored zip of vocab.txt and labels.txt).

    Raises:
        ExportError: not a TFLite model, inputs MediaPipe cannot feed, or labels that do not
            match the output.
    """
    model = _read(raw)
    _check_inputs(model, max_seq_len)
    _short_tensor_names(model)
    sg = model.subgraphs[0]
    num_labels = int(sg.tensors[sg.outputs[0]].shape[-1])
    if num_labels != len(labels):
        raise ExportError(f"{len(labels)} labels for an output of {num_labels}")
    meta = _Metadata().build(name=name, description="Text classifier (TinyBERT student); outputs softmax "
                             "probabilities per label.", max_seq_len=max_seq_len, num_labels=num_labels)
    data = np.frombuffer(meta, dtype=np.uint8)
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME]
    buf = tfl.BufferT()
    buf.data = data
    model.buffers.append(buf)
    entry = tfl.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    model.buffers = [_AlignedBuffer(None if b.data is None else np.asarray(b.data, dtype=np.uint8))
                     for b in model.buffers]
    _share_quantization(model)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO()
    out.write(bytes(builder.Output()))
    # zip offsets count from the start of the file; entries stored (MediaPipe refuses deflated
    # ones); fixed timestamps: the same inputs give the same bytes
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for fname, content in (("vocab.txt", vocab.encode("utf-8")),
                               ("labels.txt", "".join(f"{lab}\n" for lab in labels).encode("utf-8"))):
            z.writestr(zipfile.ZipInfo(fname, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return out.getvalue()


def read_attached(path) -> dict[str, bytes]:
    """The files zipped onto a .tflite (vocab.txt, labels.txt), for checking a bundle.

    Raises:
        ExportError: no attached files.
    """
    try:
        with zipfile.ZipFile(path) as z:
            return {n: z.read(n) for n in z.namelist()}
    except zipfile.BadZipFile:
        raise ExportError(f"{path} carries no TFLite metadata files (vocab.txt, labels.txt)") from None
