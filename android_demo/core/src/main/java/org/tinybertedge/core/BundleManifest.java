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
 * tinybert-edge/bundle v1), the artifact, vocab.txt and labels.txt, each checked against its
 * sha256 before anything is used.
 */
public final class BundleManifest {
    public static final String SCHEMA = "tinybert-edge/bundle";
    public static final int SCHEMA_VERSION = 1;

    public final File dir;
    public final Map<String, Object> metadata;
    /** "executorch" or "tflite". */
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
    private final WordPieceTokenizer tokenizer;

    private BundleManifest(File dir, Map<String, Object> metadata, String format, File artifact, List<String> labels,
                           int maxSeqLen, SeqLenPolicy policy, Map<Integer, String> signatures, String inputDtype,
                           String quantization, TokenizerSettings tokenizerSettings, Map<String, Integer> vocab,
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
        this.tokenizer = tokenizer;
    }

    /**
     * Reads and verifies a bundle directory.
     *
     * @param dir the bundle directory (holding metadata.json)
     * @return the manifest
     * @throws BundleException missing file, sha256 mismatch, malformed or unknown metadata, unknown
     *     input dtype, max_seq_len of 2 or less, vocabulary without [CLS]/[SEP]/[UNK], labels.txt
     *     not matching, or a bundle that failed validation on export
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
        if (!format.equals("executorch") && !format.equals("tflite")) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": unknown format " + format + " (executorch or tflite)");
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
        Map<String, Object> tok = Json.obj(meta, "tokenizer", where);
        TokenizerSettings ts = TokenizerSettings.fromMetadata(tok);
        List<String> vocabLines = readLines(new File(dir, Json.str(tok, "vocab_file", where + " tokenizer")));
        Map<String, Integer> vocab = new HashMap<>(vocabLines.size() * 2);
        for (int i = 0; i < vocabLines.size(); i++) vocab.putIfAbsent(vocabLines.get(i), i);
        // built here, so a vocabulary without [CLS]/[SEP]/[UNK] refuses the bundle at load time
        WordPieceTokenizer tokenizer = new WordPieceTokenizer(vocab, ts, CharTables.defaults());
        String quant = Json.str(Json.obj(meta, "quantization", where), "name", where + " quantization");
        return new BundleManifest(dir, meta, format, new File(dir, artifactName), labels, (int) maxSeqLen, policy, sigs,
                dtype, quant, ts, vocab, tokenizer);
    }

    /**
     * Refuses a bundle an engine cannot run.
     *
     * @param wantFormat the engine's format ("executorch" or "tflite")
     * @param wantDtype the input dtype its runtime takes ("int64" or "int32")
     * @throws BundleException when the bundle is of another format or dtype
     */
    public void requireFormat(String wantFormat, String wantDtype) throws BundleException {
        if (!format.equals(wantFormat)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, dir.getName() + " is a " + format + " bundle; pick the "
                    + (format.equals("tflite") ? "LiteRT" : "ExecuTorch") + " backend for it");
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
