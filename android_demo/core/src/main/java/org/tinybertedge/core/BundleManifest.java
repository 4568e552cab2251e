package org.tinybertedge.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A bundle directory written by `tinybert-edge export`: metadata.json (schema
 * tinybert-edge/bundle v2), the artifact, vocab.txt, labels.txt and selftest.json, each checked
 * against its sha256 before anything is used.
 *
 * <p>v2 (this reader) adds what the artifact outputs (outputs[0].kind: "logits", the app applies
 * softmax; "probabilities", softmax is inside the model as in LiteRT/MediaPipe .tflite bundles),
 * the on-device self-test (self_test: selftest.json, its number of cases and atol) and, for
 * MediaPipe-ready .tflite files, the "mediapipe" entry. v1 bundles are refused (export again), as
 * the Python kit refuses them.
 */
public final class BundleManifest {
    public static final String SCHEMA = "tinybert-edge/bundle";
    public static final int SCHEMA_VERSION = 2;
    /** Formats this app runs: .pte, .tflite, and single-signature .tflite with MediaPipe metadata. */
    public static final List<String> FORMATS = Arrays.asList("executorch", "tflite", "mediapipe");

    /** metadata.json "self_test": where the golden inputs are and how close a device must come. */
    public static final class SelfTestEntry {
        /** selftest.json, relative to the bundle directory (sha256-checked like every file). */
        public final String file;
        public final int cases;
        /** Largest allowed |device output - exported output|, in the units of {@link #outputsKind}. */
        public final double atol;

        SelfTestEntry(String file, int cases, double atol) {
            this.file = file;
            this.cases = cases;
            this.atol = atol;
        }
    }

    public final File dir;
    public final Map<String, Object> metadata;
    /** "executorch", "tflite" or "mediapipe" (a single-signature .tflite with TFLite Model Metadata). */
    public final String format;
    public final File artifact;
    public final List<String> labels;
    public final int maxSeqLen;
    public final SeqLenPolicy policy;
    /** Signature (LiteRT) or method (ExecuTorch) name per traced length. */
    public final Map<Integer, String> signatures;
    /** "int64" (.pte) or "int32" (.tflite), the dtype of all three inputs. */
    public final String inputDtype;
    public final String quantization;
    public final TokenizerSettings tokenizerSettings;
    public final Map<String, Integer> vocab;
    /** What the artifact returns per class: "logits" (softmax in the app) or "probabilities" (softmax in the model). */
    public final String outputsKind;
    /** The bundle's on-device self-test, or null when metadata.json has none. */
    public final SelfTestEntry selfTest;
    /** True when MediaPipe Tasks' TextClassifier can load the artifact as is (metadata "mediapipe".loadable). */
    public final boolean mediapipeLoadable;
    private final WordPieceTokenizer tokenizer;

    private BundleManifest(File dir, Map<String, Object> metadata, String format, File artifact, List<String> labels,
                           int maxSeqLen, SeqLenPolicy policy, Map<Integer, String> signatures, String inputDtype,
                           String quantization, TokenizerSettings tokenizerSettings, Map<String, Integer> vocab,
                           String outputsKind, SelfTestEntry selfTest, boolean mediapipeLoadable,
                           WordPieceTokenizer tokenizer) {
        this.dir = dir;
        this.metadata = metadata;
        this.format = format;
        this.artifact = artifact;
        this.labels = labels;
        this.maxSeqLen = maxSeqLen;
        this.policy = policy;
        this.signatures = signatures;
        this.inputDtype = inputDtype;
        this.quantization = quantization;
        this.tokenizerSettings = tokenizerSettings;
        this.vocab = vocab;
        this.outputsKind = outputsKind;
        this.selfTest = selfTest;
        this.mediapipeLoadable = mediapipeLoadable;
        this.tokenizer = tokenizer;
    }

    /**
     * Reads and verifies a bundle directory.
     *
     * @param dir the bundle directory (holding metadata.json)
     * @return the manifest
     * @throws BundleException missing file, sha256 mismatch, malformed or unknown metadata (a
     *     schema version other than 2, an unknown output kind), unknown input dtype, max_seq_len of
     *     2 or less, vocabulary without [CLS]/[SEP]/[UNK], labels.txt or the output shape not
     *     matching the labels, or a bundle that failed validation on export
     */
    @SuppressWarnings("unchecked")
    public static BundleManifest load(File dir) throws BundleException {
        File metaFile = new File(dir, "metadata.json");
        if (!metaFile.isFile()) {
            throw new BundleException(BundleException.Reason.MISSING_FILE, dir + " has no metadata.json; push the whole bundle directory made by tinybert-edge export");
        }
        Map<String, Object> meta;
        try {
            Object parsed = Json.parse(new String(Files.readAllBytes(metaFile.toPath()), StandardCharsets.UTF_8));
            if (!(parsed instanceof Map)) throw new IllegalArgumentException("not an object");
            meta = (Map<String, Object>) parsed;
        } catch (IOException | IllegalArgumentException e) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, metaFile + " is not valid JSON (" + e.getMessage() + "); export the bundle again");
        }
        String where = "metadata.json";
        if (!SCHEMA.equals(meta.get("schema"))) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, metaFile + " is not a tinybert-edge bundle manifest (schema " + meta.get("schema") + ")");
        }
        long version = Json.num(meta, "schema_version", where);
        if (version > SCHEMA_VERSION) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, metaFile + " has schema version " + version + "; this app reads up to " + SCHEMA_VERSION + ", update the app");
        }
        if (version < SCHEMA_VERSION) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, metaFile + " has schema version " + version + " (an older tinybert-edge: no output kind, no self-test); export the bundle again");
        }
        Map<String, Object> files = Json.obj(meta, "files", where);
        for (Map.Entry<String, Object> e : files.entrySet()) {
            File f = new File(dir, e.getKey());
            if (!f.isFile()) {
                throw new BundleException(BundleException.Reason.MISSING_FILE, e.getKey() + " is missing from " + dir + "; push the whole bundle directory");
            }
            String want = Json.str((Map<String, Object>) e.getValue(), "sha256", where + " files." + e.getKey());
            if (!sha256(f).equals(want)) {
                throw new BundleException(BundleException.Reason.SHA256_MISMATCH, e.getKey() + " in " + dir + " does not match its sha256 in metadata.json (corrupted, truncated or edited); push the bundle again");
            }
        }
        String format = Json.str(meta, "format", where);
        if (!FORMATS.contains(format)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": unknown format " + format + " (executorch, tflite or mediapipe)");
        }
        if (!"passed".equals(meta.get("status"))) {
            throw new BundleException(BundleException.Reason.FAILED_VALIDATION, dir + " failed validation on export (status " + meta.get("status") + "); export it again");
        }
        String artifactName = Json.str(meta, "artifact", where);
        if (!files.containsKey(artifactName)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": the artifact " + artifactName + " has no sha256 in \"files\"");
        }
        long maxSeqLen = Json.num(meta, "max_seq_len", where);
        if (maxSeqLen <= 2) {
            throw new BundleException(BundleException.Reason.BAD_MAX_SEQ_LEN, where + ": max_seq_len " + maxSeqLen + " leaves no room for text between [CLS] and [SEP]; export with --seq-len 8 or more");
        }
        String dtype = null;
        for (Object o : Json.list(meta, "inputs", where)) {
            String d = Json.str((Map<String, Object>) o, "dtype", where + " inputs");
            if (!d.equals("int64") && !d.equals("int32")) {
                throw new BundleException(BundleException.Reason.UNKNOWN_DTYPE, where + ": input dtype " + d + " is not supported (int64 for .pte, int32 for .tflite)");
            }
            if (dtype != null && !dtype.equals(d)) {
                throw new BundleException(BundleException.Reason.UNKNOWN_DTYPE, where + ": inputs mix dtypes " + dtype + " and " + d);
            }
            dtype = d;
        }
        if (dtype == null) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"inputs\" is empty");
        SeqLenPolicy policy = SeqLenPolicy.fromMetadata(Json.obj(meta, "seq_len_policy", where), (int) maxSeqLen);
        Map<Integer, String> sigs = new HashMap<>();
        for (Object o : Json.list(meta, "signatures", where)) {
            Map<String, Object> s = (Map<String, Object>) o;
            sigs.put((int) Json.num(s, "seq_len", where + " signatures"), Json.str(s, "name", where + " signatures"));
        }
        Map<String, Object> task = Json.obj(meta, "task", where);
        List<String> labels = new ArrayList<>();
        for (Object o : Json.list(task, "labels", where + " task")) labels.add(String.valueOf(o));
        List<String> labelLines = readLines(new File(dir, Json.str(task, "labels_file", where + " task")));
        if (!labelLines.equals(labels)) {
            throw new BundleException(BundleException.Reason.LABELS_MISMATCH, "labels.txt " + labelLines + " does not match metadata.json " + labels + "; export the bundle again");
        }
        String outputsKind = outputsKind(meta, labels.size(), where);
        SelfTestEntry selfTest = selfTest(meta, files, where);
        Object mp = meta.get("mediapipe");
        boolean mediapipeLoadable = mp instanceof Map && Boolean.TRUE.equals(((Map<String, Object>) mp).get("loadable"));
        Map<String, Object> tok = Json.obj(meta, "tokenizer", where);
        TokenizerSettings ts = TokenizerSettings.fromMetadata(tok);
        List<String> vocabLines = readLines(new File(dir, Json.str(tok, "vocab_file", where + " tokenizer")));
        Map<String, Integer> vocab = new HashMap<>(vocabLines.size() * 2);
        for (int i = 0; i < vocabLines.size(); i++) vocab.putIfAbsent(vocabLines.get(i), i);
        // built here, so a vocabulary without [CLS]/[SEP]/[UNK] refuses the bundle at load time
        WordPieceTokenizer tokenizer = new WordPieceTokenizer(vocab, ts, CharTables.defaults());
        String quant = Json.str(Json.obj(meta, "quantization", where), "name", where + " quantization");
        return new BundleManifest(dir, meta, format, new File(dir, artifactName), labels, (int) maxSeqLen, policy, sigs,
                dtype, quant, ts, vocab, outputsKind, selfTest, mediapipeLoadable, tokenizer);
    }

    /** outputs[0].kind, checked against the labels: its shape must end in the number of labels. */
    @SuppressWarnings("unchecked")
    private static String outputsKind(Map<String, Object> meta, int numLabels, String where) throws BundleException {
        List<Object> outs = Json.list(meta, "outputs", where);
        if (outs.isEmpty() || !(outs.get(0) instanceof Map)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"outputs\" has no output object; export the bundle again");
        }
        Map<String, Object> out = (Map<String, Object>) outs.get(0);
        String w = where + " outputs[0]";
        String kind = Json.str(out, "kind", w);
        if (!kind.equals("logits") && !kind.equals("probabilities")) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, w + ": unknown kind " + kind + " (logits or probabilities); update the app or export the bundle again");
        }
        List<Object> shape = Json.list(out, "shape", w);
        Object last = shape.isEmpty() ? null : shape.get(shape.size() - 1);
        if (!(last instanceof Long) || (Long) last != numLabels) {
            throw new BundleException(BundleException.Reason.LABELS_MISMATCH, w + ": shape " + shape + " does not end in the " + numLabels + " labels of labels.txt; export the bundle again");
        }
        return kind;
    }

    /** metadata.json "self_test" (optional): its file must be one of the sha256-checked files. */
    @SuppressWarnings("unchecked")
    private static SelfTestEntry selfTest(Map<String, Object> meta, Map<String, Object> files, String where) throws BundleException {
        if (!meta.containsKey("self_test")) return null;
        Map<String, Object> st = Json.obj(meta, "self_test", where);
        String w = where + " self_test";
        String file = Json.str(st, "file", w);
        if (!files.containsKey(file)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, w + ": " + file + " has no sha256 in \"files\"; export the bundle again");
        }
        long cases = Json.num(st, "cases", w);
        double atol = Json.dbl(st, "atol", w);
        if (cases < 1 || !(atol > 0)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, w + ": needs at least one case and an atol above 0 (got " + cases + ", " + atol + ")");
        }
        return new SelfTestEntry(file, (int) cases, atol);
    }

    /**
     * Class probabilities from what the engine returned: softmax when the artifact outputs logits,
     * the scores as they are when the softmax is inside the model.
     *
     * @param scores the engine's output for one input, in label order
     * @return probabilities
     */
    public double[] probabilities(float[] scores) {
        return Postprocess.probabilities(scores, outputsKind);
    }

    /**
     * Refuses a bundle an engine cannot run.
     *
     * @param wantFormat the engine's format ("executorch", "tflite" or "mediapipe")
     * @param wantDtype the input dtype its runtime takes ("int64" or "int32")
     * @throws BundleException when the bundle is of another format or dtype
     */
    public void requireFormat(String wantFormat, String wantDtype) throws BundleException {
        requireAnyFormat(java.util.Collections.singletonList(wantFormat), wantDtype);
    }

    /**
     * Refuses a bundle an engine cannot run (an engine may take several formats: LiteRT runs
     * "tflite" and "mediapipe" bundles alike).
     *
     * @param wantFormats the formats the engine runs
     * @param wantDtype the input dtype its runtime takes ("int64" or "int32")
     * @throws BundleException when the bundle is of another format or dtype
     */
    public void requireAnyFormat(List<String> wantFormats, String wantDtype) throws BundleException {
        if (!wantFormats.contains(format)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, dir.getName() + " is a " + format + " bundle; pick the "
                    + (format.equals("executorch") ? "ExecuTorch" : format.equals("mediapipe") ? "MediaPipe or LiteRT" : "LiteRT") + " backend for it");
        }
        if (!inputDtype.equals(wantDtype)) {
            throw new BundleException(BundleException.Reason.UNKNOWN_DTYPE, dir.getName() + ": " + format + " inputs must be " + wantDtype
                    + ", metadata.json says " + inputDtype);
        }
    }

    /** The WordPiece tokenizer of this bundle's model (built and checked by {@link #load}). */
    public WordPieceTokenizer tokenizer() {
        return tokenizer;
    }

    /** Size of the artifact in bytes. */
    public long artifactBytes() {
        return artifact.length();
    }

    @SuppressWarnings("unchecked")
    public String artifactSha256() {
        return (String) ((Map<String, Object>) ((Map<String, Object>) metadata.get("files")).get(artifact.getName())).get("sha256");
    }

    private static List<String> readLines(File f) throws BundleException {
        if (!f.isFile()) throw new BundleException(BundleException.Reason.MISSING_FILE, f.getName() + " is missing from " + f.getParent() + "; push the whole bundle directory");
        try {
            String s = new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
            List<String> lines = new ArrayList<>(Arrays.asList(s.split("\n", -1)));
            if (!lines.isEmpty() && lines.get(lines.size() - 1).isEmpty()) lines.remove(lines.size() - 1);  // final newline
            for (int i = 0; i < lines.size(); i++) if (lines.get(i).endsWith("\r")) lines.set(i, lines.get(i).substring(0, lines.get(i).length() - 1));
            return lines;
        } catch (IOException e) {
            throw new BundleException(BundleException.Reason.MISSING_FILE, "cannot read " + f + ": " + e.getMessage());
        }
    }

    /**
     * Hex sha256 of a file.
     *
     * @param f the file
     * @return lowercase hex digest
     * @throws BundleException when the file cannot be read
     */
    public static String sha256(File f) throws BundleException {
        try (InputStream in = new FileInputStream(f)) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) md.update(buf, 0, n);
            StringBuilder b = new StringBuilder();
            for (byte x : md.digest()) b.append(String.format("%02x", x));
            return b.toString();
        } catch (IOException | NoSuchAlgorithmException e) {
            throw new BundleException(BundleException.Reason.MISSING_FILE, "cannot read " + f + ": " + e.getMessage());
        }
    }
}
