package org.tinybertedge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The bundle reader on a real bundle exported by the Python kit, and on every broken variant issue #6 names. */
class BundleManifestTest {
    @TempDir
    File tmp;

    @Test
    void readsTheExportedBundle() throws Exception {
        BundleManifest m = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        assertTrue(m.format.equals("tflite") || m.format.equals("executorch"));
        assertEquals(m.format.equals("tflite") ? "int32" : "int64", m.inputDtype);
        assertTrue(m.maxSeqLen > 2 && m.artifact.isFile() && !m.labels.isEmpty());
        assertTrue(m.signatures.containsKey(m.maxSeqLen), "a signature for the full length");
        // schema v2: LiteRT .tflite carry the softmax (probabilities), ExecuTorch .pte return logits
        assertEquals(m.format.equals("executorch") ? "logits" : "probabilities", m.outputsKind);
        assertTrue(m.selfTest != null && m.selfTest.file.equals("selftest.json") && m.selfTest.cases >= 1 && m.selfTest.atol > 0,
                "the v2 bundle carries its self-test");
        assertEquals(m.selfTest.cases, SelfTest.load(m).cases.size());
        m.requireFormat(m.format, m.inputDtype);
        String other = m.format.equals("tflite") ? "executorch" : "tflite";
        BundleException e = assertThrows(BundleException.class, () -> m.requireFormat(other, "int64"));
        assertTrue(e.getMessage().contains("backend"), e.getMessage());
    }

    private static void edit(File f, String from, String to) throws IOException {
        String s = new String(Files.readAllBytes(f.toPath()), StandardCharsets.UTF_8);
        assertTrue(s.contains(from), f + " contains " + from);
        Files.write(f.toPath(), s.replace(from, to).getBytes(StandardCharsets.UTF_8));
    }

    private BundleException.Reason broken(java.util.function.Consumer<File> breakIt) throws IOException {
        File b = Fixtures.copyBundle(Files.createTempDirectory(tmp.toPath(), "b").toFile());
        breakIt.accept(b);
        BundleException e = assertThrows(BundleException.class, () -> BundleManifest.load(b));
        assertTrue(e.getMessage().length() > 20, "the message explains: " + e.getMessage());
        return e.reason;
    }

    @Test
    void missingFileIsNamed() throws IOException {
        assertEquals(BundleException.Reason.MISSING_FILE, broken(b -> new File(b, "vocab.txt").delete()));
        assertEquals(BundleException.Reason.MISSING_FILE, broken(b -> new File(b, "metadata.json").delete()));
    }

    @Test
    void sha256MismatchIsRefused() throws IOException {
        assertEquals(BundleException.Reason.SHA256_MISMATCH, broken(b -> {
            try {
                Files.write(new File(b, "labels.txt").toPath(), "x\ny\n".getBytes(StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        }));
    }

    @Test
    void unknownDtypeAndTinyMaxSeqLenAreRefused() throws IOException {
        assertEquals(BundleException.Reason.UNKNOWN_DTYPE, broken(b -> rewrite(b, m -> m.replaceFirst("\"dtype\": \"int(32|64)\"", "\"dtype\": \"float16\""))));
        assertEquals(BundleException.Reason.BAD_MAX_SEQ_LEN, broken(b -> rewrite(b, m -> m.replaceFirst("\"max_seq_len\": \\d+", "\"max_seq_len\": 2"))));
        assertEquals(BundleException.Reason.BAD_METADATA, broken(b -> rewrite(b, m -> m.substring(0, m.length() / 2))));
    }

    @Test
    void schemaVersionsOtherThanTwoAreRefusedWithTheFix() throws IOException {
        File newer = Fixtures.copyBundle(Files.createTempDirectory(tmp.toPath(), "b").toFile());
        rewrite(newer, m -> m.replaceFirst("\"schema_version\": 2", "\"schema_version\": 3"));
        BundleException e = assertThrows(BundleException.class, () -> BundleManifest.load(newer));
        assertEquals(BundleException.Reason.BAD_METADATA, e.reason);
        assertTrue(e.getMessage().contains("reads up to 2, update the app"), e.getMessage());
        File older = Fixtures.copyBundle(Files.createTempDirectory(tmp.toPath(), "b").toFile());
        rewrite(older, m -> m.replaceFirst("\"schema_version\": 2", "\"schema_version\": 1"));
        e = assertThrows(BundleException.class, () -> BundleManifest.load(older));
        assertTrue(e.getMessage().contains("export the bundle again"), e.getMessage());
    }

    @Test
    void unknownOutputKindWrongOutputShapeAndMissingSelfTestAreRefused() throws IOException {
        assertEquals(BundleException.Reason.BAD_METADATA, broken(b -> rewrite(b, m -> m.replaceFirst("\"kind\": \"(logits|probabilities)\"", "\"kind\": \"log_probabilities\""))));
        assertEquals(BundleException.Reason.LABELS_MISMATCH, broken(b -> rewrite(b, m -> m.replaceFirst("\"shape\": \\[\\s*1,\\s*2\\s*\\]", "\"shape\": [1, 3]"))));
        assertEquals(BundleException.Reason.MISSING_FILE, broken(b -> new File(b, "selftest.json").delete()));
    }

    /** The same scores become probabilities as the bundle's output kind says: softmax for logits only. */
    @Test
    void softmaxOnlyForLogitsProbabilitiesPassThrough() throws Exception {
        float[] scores = {0.25f, 0.75f};
        File asProbs = Fixtures.copyBundle(Files.createTempDirectory(tmp.toPath(), "b").toFile());
        rewrite(asProbs, m -> m.replaceAll("\"(logits|probabilities)\"", "\"probabilities\""));
        BundleManifest p = BundleManifest.load(asProbs);
        assertEquals("probabilities", p.outputsKind);
        assertArrayEquals(new double[]{0.25, 0.75}, p.probabilities(scores), 1e-7);
        File asLogits = Fixtures.copyBundle(Files.createTempDirectory(tmp.toPath(), "b").toFile());
        rewrite(asLogits, m -> m.replaceAll("\"(logits|probabilities)\"", "\"logits\""));
        BundleManifest l = BundleManifest.load(asLogits);
        assertEquals("logits", l.outputsKind);
        double e = Math.exp(0.5);
        assertArrayEquals(new double[]{1 / (1 + e), e / (1 + e)}, l.probabilities(scores), 1e-7);
        // and through the Classifier, with an engine that returns those scores whatever it is given
        InferenceEngine fixed = new InferenceEngine() {
            public String backend() {
                return "fixed";
            }

            public float[] run(PaddedInput in) {
                return scores.clone();
            }

            public void close() {
            }
        };
        assertArrayEquals(new double[]{0.25, 0.75}, new Classifier(p, fixed).classify("a fine film", null).probabilities, 1e-7);
        Prediction pl = new Classifier(l, fixed).classify("a fine film", null);
        assertEquals(l.labels.get(1), pl.label);
        assertEquals(e / (1 + e), pl.probabilities[1], 1e-7);
    }

    private static void rewrite(File b, java.util.function.UnaryOperator<String> f) {
        try {
            File meta = new File(b, "metadata.json");
            String s = new String(Files.readAllBytes(meta.toPath()), StandardCharsets.UTF_8);
            Files.write(meta.toPath(), f.apply(s).getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    @Test
    void vocabWithoutClsIsRefused() throws IOException {
        assertEquals(BundleException.Reason.BAD_VOCAB, broken(b -> {
            try {
                File v = new File(b, "vocab.txt");
                String old = BundleManifest.sha256(v);
                edit(v, "[CLS]\n", "[CLZ]\n");
                rewrite(b, m -> m.replace(old, uncheckedSha(v)));  // a consistent bundle with a bad vocabulary
            } catch (IOException | BundleException e) {
                throw new RuntimeException(e);
            }
        }));
    }

    private static String uncheckedSha(File f) {
        try {
            return BundleManifest.sha256(f);
        } catch (BundleException e) {
            throw new RuntimeException(e);
        }
    }

    @Test
    void logitsOfTheWrongLengthAreATypedError() {
        InferenceException e = assertThrows(InferenceException.class, () -> Postprocess.checkLogits(new float[]{1, 2, 3}, 2));
        assertTrue(e.getMessage().contains("3 logits for 2 labels"));
        assertThrows(InferenceException.class, () -> Postprocess.checkLogits(new float[]{Float.NaN, 1}, 2));
    }

    @Test
    void malformedJsonSaysWhere() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\": [1, 2,}"));
        assertTrue(e.getMessage().contains("offset"));
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) Json.parse(Json.write(Map.of("k", "é\u00e9\"\n😀")));
        assertEquals("é\u00e9\"\n😀", m.get("k"));
    }
}
