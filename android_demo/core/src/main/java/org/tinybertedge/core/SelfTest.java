package org.tinybertedge.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The on-device self-test of a bundle (selftest.json, schema tinybert-edge/selftest v1): a few
 * inputs with the token ids and the outputs the artifact gave on the exporting host. Before the
 * benchmark times anything, every case runs through the engine on the phone; its outputs must be
 * within the bundle's atol of the recorded ones (as the Python kit's Bundle.self_test checks on a
 * board). A failed self-test means the runtime, the artifact or the tokenizer on this device does
 * not reproduce the export, and the benchmark does not time it.
 *
 * <p>Token-id engines (ExecuTorch, LiteRT): the core's tokenizer must give the recorded ids and the
 * policy the recorded padded length; then the recorded ids run, padded to that length. Text-in
 * engines (MediaPipe) tokenize inside their runtime with their own WordPiece, which differs from
 * BERT's on non-ASCII text (benchmarks/mediapipe_check.py counts such texts); they run the ASCII
 * cases only, and the others are counted as skipped in the message.
 */
public final class SelfTest {
    public static final String SCHEMA = "tinybert-edge/selftest";
    public static final int SCHEMA_VERSION = 1;

    /** One golden input and what the artifact returned for it on the exporting host. */
    public static final class Case {
        public final String text, pair, label;
        public final int[] inputIds, tokenTypeIds;
        public final int paddedLength;
        public final double[] expected;

        Case(String text, String pair, int[] inputIds, int[] tokenTypeIds, int paddedLength, double[] expected, String label) {
            this.text = text;
            this.pair = pair;
            this.inputIds = inputIds;
            this.tokenTypeIds = tokenTypeIds;
            this.paddedLength = paddedLength;
            this.expected = expected;
            this.label = label;
        }
    }

    /** The outcome, written as the "self_test" entry of the benchmark results. */
    public static final class Result {
        public final boolean passed;
        /** Cases compared (skipped ones not counted). */
        public final int cases;
        /** Largest |device output - recorded output| over the compared cases (0 when none ran). */
        public final double maxAbsDiff;
        public final String message;

        Result(boolean passed, int cases, double maxAbsDiff, String message) {
            this.passed = passed;
            this.cases = cases;
            this.maxAbsDiff = maxAbsDiff;
            this.message = message;
        }

        /** A self-test that could not run at all (unreadable selftest.json, ...). */
        public static Result failed(String message) {
            return new Result(false, 0, 0.0, message);
        }

        /** {"passed", "cases", "max_abs_diff", "message"}: the results schema's self_test object. */
        public Map<String, Object> toMap() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("passed", passed);
            m.put("cases", cases);
            m.put("max_abs_diff", maxAbsDiff);
            m.put("message", message);
            return m;
        }
    }

    public final String outputsKind;
    public final double atol;
    public final List<Case> cases;

    private SelfTest(String outputsKind, double atol, List<Case> cases) {
        this.outputsKind = outputsKind;
        this.atol = atol;
        this.cases = cases;
    }

    /**
     * Reads the bundle's selftest.json (already sha256-checked by {@link BundleManifest#load}).
     *
     * @param bundle a verified bundle with a self-test entry
     * @return the self-test, with the atol of metadata.json
     * @throws BundleException no self-test in the bundle, unreadable or malformed selftest.json, or
     *     one that does not match the bundle (output kind, number of labels)
     */
    @SuppressWarnings("unchecked")
    public static SelfTest load(BundleManifest bundle) throws BundleException {
        if (bundle.selfTest == null) {
            throw new BundleException(BundleException.Reason.MISSING_FILE, bundle.dir.getName() + " has no self-test; export it again with this tinybert-edge");
        }
        File f = new File(bundle.dir, bundle.selfTest.file);
        String where = bundle.selfTest.file;
        Map<String, Object> doc;
        try {
            Object parsed = Json.parse(new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8));
            if (!(parsed instanceof Map)) throw new IllegalArgumentException("not an object");
            doc = (Map<String, Object>) parsed;
        } catch (IOException | IllegalArgumentException e) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, f + " is not valid JSON (" + e.getMessage() + "); export the bundle again");
        }
        if (!SCHEMA.equals(doc.get("schema"))) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + " is not a tinybert-edge self-test (schema " + doc.get("schema") + ")");
        }
        long version = Json.num(doc, "schema_version", where);
        if (version > SCHEMA_VERSION) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + " has schema version " + version + "; this app reads up to " + SCHEMA_VERSION + ", update the app");
        }
        String kind = Json.str(doc, "outputs_kind", where);
        if (!kind.equals(bundle.outputsKind)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + " records " + kind + " but metadata.json says the artifact outputs " + bundle.outputsKind + "; export the bundle again");
        }
        List<Case> cases = new ArrayList<>();
        int n = bundle.labels.size();
        for (Object o : Json.list(doc, "cases", where)) {
            if (!(o instanceof Map)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": a case is not an object");
            Map<String, Object> c = (Map<String, Object>) o;
            String w = where + " case " + cases.size();
            Object pair = c.get("text_pair");
            double[] expected = doubles(Json.list(c, "expected", w), w);
            if (expected.length != n) {
                throw new BundleException(BundleException.Reason.LABELS_MISMATCH, w + " has " + expected.length + " expected outputs for " + n + " labels; export the bundle again");
            }
            cases.add(new Case(Json.str(c, "text", w), pair instanceof String ? (String) pair : null, ints(Json.list(c, "input_ids", w), w),
                    ints(Json.list(c, "token_type_ids", w), w), (int) Json.num(c, "padded_length", w), expected,
                    c.get("label") instanceof String ? (String) c.get("label") : null));
        }
        if (cases.isEmpty()) throw new BundleException(BundleException.Reason.BAD_METADATA, where + " has no cases; export the bundle again");
        return new SelfTest(kind, bundle.selfTest.atol, Collections.unmodifiableList(cases));
    }

    private static int[] ints(List<Object> l, String where) throws BundleException {
        int[] a = new int[l.size()];
        for (int i = 0; i < a.length; i++) {
            if (!(l.get(i) instanceof Long)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": ids must be integers");
            a[i] = ((Long) l.get(i)).intValue();
        }
        return a;
    }

    private static double[] doubles(List<Object> l, String where) throws BundleException {
        double[] a = new double[l.size()];
        for (int i = 0; i < a.length; i++) {
            if (!(l.get(i) instanceof Number)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": expected outputs must be numbers");
            a[i] = ((Number) l.get(i)).doubleValue();
        }
        return a;
    }

    private static boolean ascii(String s) {
        for (int i = 0; i < s.length(); i++) if (s.charAt(i) >= 0x80) return false;
        return true;
    }

    private static String shown(String text) {
        String t = text.length() > 40 ? text.substring(0, 40) + "…" : text;
        return "'" + t + "'";
    }

    /**
     * Runs every case through the engine and compares. Never throws for a mismatch or a runtime
     * error: those make a failed result whose message names the first failing case.
     *
     * @param bundle the bundle the self-test belongs to
     * @param engine an engine opened on it
     * @return the outcome
     */
    public Result run(BundleManifest bundle, InferenceEngine engine) {
        boolean text = engine.takesText();
        double worst = 0;
        int compared = 0, skipped = 0, failed = 0;
        String first = null;
        for (int i = 0; i < cases.size(); i++) {
            Case c = cases.get(i);
            String name = "case " + i + " (" + shown(c.text) + ")";
            String problem = null;
            try {
                float[] out;
                if (text) {
                    if (c.pair != null) {
                        problem = name + " is a sentence pair; " + engine.backend() + " takes one text, use the ExecuTorch or LiteRT backend";
                        out = null;
                    } else if (!ascii(c.text)) {
                        skipped++;
                        continue;
                    } else {
                        out = engine.classifyText(c.text);
                    }
                } else {
                    Encoding e = bundle.tokenizer().encode(c.text, c.pair, bundle.maxSeqLen);
                    int len = bundle.policy.padLength(c.inputIds.length);
                    if (!Arrays.equals(e.inputIds, c.inputIds) || !Arrays.equals(e.tokenTypeIds, c.tokenTypeIds)) {
                        problem = name + " tokenizes differently from the export; the app's tokenizer or vocab.txt does not match the model";
                        out = null;
                    } else if (len != c.paddedLength) {
                        problem = name + " pads to " + len + " here, " + c.paddedLength + " at export; the length policy in metadata.json does not match selftest.json";
                        out = null;
                    } else {
                        out = engine.run(new Encoding(c.inputIds, c.tokenTypeIds).pad(c.paddedLength, bundle.tokenizerSettings.padId));
                    }
                }
                if (out != null) {
                    Postprocess.checkLogits(out, bundle.labels.size());
                    double diff = 0;
                    for (int k = 0; k < out.length; k++) diff = Math.max(diff, Math.abs(out[k] - c.expected[k]));
                    compared++;
                    worst = Math.max(worst, diff);
                    if (diff > atol) {
                        problem = name + " is off by " + String.format(java.util.Locale.ROOT, "%.3g", diff) + " (> atol " + atol + "): the artifact does not reproduce its exported "
                                + outputsKind + " on this device; export it again or report the runtime version";
                    }
                }
            } catch (InferenceException | RuntimeException e) {
                problem = name + ": the runtime failed: " + e.getMessage();
            }
            if (problem != null) {
                failed++;
                if (first == null) first = problem;
            }
        }
        String skip = skipped > 0 ? "; " + skipped + " non-ASCII case(s) skipped: " + engine.backend() + " tokenizes with its own WordPiece" : "";
        if (failed > 0) {
            return new Result(false, compared, worst, failed + " of " + cases.size() + " case(s) failed; first: " + first + skip);
        }
        if (compared == 0) {
            return new Result(false, 0, 0.0, "no self-test case could run on " + engine.backend() + skip);
        }
        return new Result(true, compared, worst, compared + " case(s) within atol " + atol + " of the exported " + outputsKind + skip);
    }
}
