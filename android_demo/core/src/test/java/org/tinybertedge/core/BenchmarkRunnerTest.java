package org.tinybertedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The benchmark mode's core on a real bundle. The engine is a stand-in (a mock, on purpose):
 * ExecuTorch's, LiteRT's and MediaPipe's Android runtimes cannot exist on this JVM (no phone, no
 * Android SDK). It derives its outputs from the inputs it is given, so tokenization, padding,
 * timing, accuracy, the self-test's comparison and the results document are real; the numbers it
 * writes are the stand-in's, not a phone's. For the bundle's self-test inputs it answers what the
 * real artifact answered at export (selftest.json), as a correct runtime on a phone would; the
 * failing variants add an error above the bundle's atol, as a broken runtime would.
 */
class BenchmarkRunnerTest {
    static class StandInEngine implements InferenceEngine {
        final int labels;
        final List<Integer> lengths = new ArrayList<>();
        /** Recorded outputs by input ids (Arrays.toString of the unpadded ids), from selftest.json. */
        final Map<String, float[]> recorded = new HashMap<>();
        /** Added to every output of a self-test input: 0 for a correct runtime. */
        float error;

        StandInEngine(int labels) {
            this.labels = labels;
        }

        /** Answers the self-test inputs of `bundle` with the outputs its artifact gave at export. */
        StandInEngine replaying(BundleManifest bundle) throws BundleException {
            for (SelfTest.Case c : SelfTest.load(bundle).cases) recorded.put(Arrays.toString(c.inputIds), floats(c.expected));
            return this;
        }

        StandInEngine off(float by) {
            error = by;
            return this;
        }

        static float[] floats(double[] d) {
            float[] f = new float[d.length];
            for (int i = 0; i < d.length; i++) f[i] = (float) d[i];
            return f;
        }

        float[] answer(String key, float[] otherwise) {
            float[] r = recorded.get(key);
            if (r == null) return otherwise;
            float[] out = r.clone();
            for (int i = 0; i < out.length; i++) out[i] += error;
            return out;
        }

        @Override
        public String backend() {
            return "stand-in";
        }

        @Override
        public float[] run(PaddedInput in) {
            lengths.add(in.length());
            float[] l = new float[labels];
            for (int i = 0; i < in.realTokens; i++) l[in.inputIds[i] % labels] += 1;
            return answer(Arrays.toString(Arrays.copyOf(in.inputIds, in.realTokens)), l);
        }

        @Override
        public void close() {
        }
    }

    /** A text-in stand-in (as MediaPipe's TextClassifier is): it gets raw text, never ids. */
    static final class TextStandIn extends StandInEngine {
        final List<String> texts = new ArrayList<>();

        TextStandIn(int labels) {
            super(labels);
        }

        TextStandIn replayingTexts(BundleManifest bundle) throws BundleException {
            for (SelfTest.Case c : SelfTest.load(bundle).cases) recorded.put(c.text, floats(c.expected));
            return this;
        }

        @Override
        public String backend() {
            return "text-stand-in";
        }

        @Override
        public boolean takesText() {
            return true;
        }

        @Override
        public float[] classifyText(String text) {
            texts.add(text);
            float[] l = new float[labels];
            l[Math.abs(text.hashCode()) % labels] = 1;
            return answer(text, l);
        }

        @Override
        public float[] run(PaddedInput in) {
            throw new AssertionError("a text-in engine is never given ids");
        }
    }

    static Map<String, Object> device() {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("manufacturer", "none");
        d.put("model", "JVM test (no phone)");
        d.put("abi", System.getProperty("os.arch"));
        d.put("android_sdk", 0);  // no Android here; the results schema wants an integer
        d.put("cores", Runtime.getRuntime().availableProcessors());
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("app", "jvm-test");
        v.put("java", System.getProperty("java.version"));
        d.put("versions", v);
        return d;
    }

    @Test
    @SuppressWarnings("unchecked")
    void writesAResultsDocumentThePythonHarnessMerges() throws Exception {
        BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        List<BenchmarkRunner.Example> ex = new ArrayList<>();
        for (int i = 0; i < 30; i++) ex.add(new BenchmarkRunner.Example("film number " + i + " was " + (i % 2 == 0 ? "great" : "awful fun"), null, b.labels.get(i % b.labels.size())));
        StandInEngine[] engine = new StandInEngine[1];
        Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, threads) -> engine[0] = new StandInEngine(bundle.labels.size()).replaying(bundle),
                new BenchmarkRunner.Settings(2, 20, 3, "real", 0), ex, device(), () -> 42.0);
        Map<String, Object> r = (Map<String, Object>) doc.get("result");
        assertEquals("ok", r.get("status"), String.valueOf(r.get("reason")));
        Map<String, Object> st = (Map<String, Object>) doc.get("self_test");
        assertEquals(true, st.get("passed"), String.valueOf(st.get("message")));
        assertEquals(b.selfTest.cases, st.get("cases"));
        assertTrue((double) st.get("max_abs_diff") <= 1e-6, "the recorded outputs come back as float32");
        assertEquals(20, r.get("runs"));
        assertTrue((double) r.get("p50_ms") <= (double) r.get("p99_ms"));
        double acc = (double) r.get("accuracy");
        assertTrue(acc >= 0 && acc <= 1);
        assertEquals(30, r.get("accuracy_examples"));
        // real workload: the engine saw the policy's lengths, never more than max_seq_len
        for (int len : engine[0].lengths) assertEquals(len, b.policy.padLength(len), "a length the policy makes");
        String json = Json.write(doc);
        assertEquals(doc.get("schema"), ((Map<String, Object>) Json.parse(json)).get("schema"));
        File out = Fixtures.path("tinybert.benchOut");
        Files.write(out.toPath(), json.getBytes(StandardCharsets.UTF_8));
    }

    @Test
    @SuppressWarnings("unchecked")
    void badSettingsAndWrongLogitsBecomeAFailedResultNotACrash() throws Exception {
        BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, t) -> new StandInEngine(2), new BenchmarkRunner.Settings(0, 5, 1, "fixed", 0), null, device(), null);
        Map<String, Object> r = (Map<String, Object>) doc.get("result");
        assertEquals("failed", r.get("status"));
        assertTrue(((String) r.get("reason")).contains("threads must be at least 1"));
        doc = BenchmarkRunner.run(b, (bundle, t) -> new StandInEngine(b.labels.size() + 1), new BenchmarkRunner.Settings(1, 5, 1, "fixed", 0), null, device(), null);
        assertTrue(!doc.containsKey("self_test"), "outputs of the wrong length stop the run before the self-test");
        r = (Map<String, Object>) doc.get("result");
        assertEquals("failed", r.get("status"));
        assertTrue(((String) r.get("reason")).contains("logits for"));
        List<BenchmarkRunner.Example> ex = BenchmarkRunner.Example.parseTsv("nope\ta text\n");
        doc = BenchmarkRunner.run(b, (bundle, t) -> new StandInEngine(b.labels.size()).replaying(bundle), new BenchmarkRunner.Settings(1, 5, 1, "real", 0), ex, device(), null);
        r = (Map<String, Object>) doc.get("result");
        assertTrue(((String) r.get("reason")).contains("unknown to the model"), String.valueOf(r.get("reason")));
    }

    @Test
    void fixedWorkloadWithoutDataUsesFullLengthSyntheticInputs() {
        try {
            BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
            StandInEngine[] e = new StandInEngine[1];
            Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, t) -> e[0] = new StandInEngine(b.labels.size()).replaying(bundle), new BenchmarkRunner.Settings(1, 10, 2, "fixed", 0), null, device(), null);
            assertEquals("ok", ((Map<?, ?>) doc.get("result")).get("status"));
            // the self-test runs at the policy's lengths; everything else (first, warm-up, timed) at max_seq_len
            List<Integer> timed = e[0].lengths.subList(1 + b.selfTest.cases, e[0].lengths.size());
            for (int len : timed) assertEquals(b.maxSeqLen, len);
            assertEquals((double) b.maxSeqLen, ((Map<?, ?>) doc.get("result")).get("mean_input_tokens"));
        } catch (BundleException ex) {
            throw new AssertionError(ex);
        }
    }

    @Test
    @SuppressWarnings("unchecked")
    void aFailedSelfTestIsReportedAndNothingIsTimed() throws Exception {
        BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        StandInEngine[] e = new StandInEngine[1];
        float by = (float) (2 * b.selfTest.atol);
        Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, t) -> e[0] = new StandInEngine(b.labels.size()).replaying(bundle).off(by),
                new BenchmarkRunner.Settings(1, 50, 5, "fixed", 0), null, device(), null);
        Map<String, Object> st = (Map<String, Object>) doc.get("self_test");
        assertEquals(false, st.get("passed"));
        assertEquals(b.selfTest.cases, st.get("cases"));
        assertEquals(by, (double) st.get("max_abs_diff"), 1e-6);
        assertTrue(((String) st.get("message")).contains("is off by"), (String) st.get("message"));
        Map<String, Object> r = (Map<String, Object>) doc.get("result");
        assertEquals("failed", r.get("status"));
        assertTrue(((String) r.get("reason")).contains("self-test failed"), (String) r.get("reason"));
        assertTrue(!r.containsKey("p50_ms") && !r.containsKey("runs"), "no timings of a runtime that computes something else");
        assertEquals(1 + b.selfTest.cases, e[0].lengths.size(), "the first inference and the self-test, then nothing");
    }

    @Test
    @SuppressWarnings("unchecked")
    void aTextInEngineIsTimedTextToScoresAndSelfTestedOnAsciiCases() throws Exception {
        BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        TextStandIn[] e = new TextStandIn[1];
        List<BenchmarkRunner.Example> ex = new ArrayList<>();
        for (int i = 0; i < 12; i++) ex.add(new BenchmarkRunner.Example("film number " + i + " was fine", null, b.labels.get(i % b.labels.size())));
        Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, t) -> e[0] = new TextStandIn(b.labels.size()).replayingTexts(bundle),
                new BenchmarkRunner.Settings(1, 10, 2, "real", 0), ex, device(), null);
        Map<String, Object> r = (Map<String, Object>) doc.get("result");
        assertEquals("ok", r.get("status"), String.valueOf(r.get("reason")));
        assertEquals("text-stand-in", r.get("backend"));
        assertEquals(12, r.get("accuracy_examples"));
        Map<String, Object> st = (Map<String, Object>) doc.get("self_test");
        assertEquals(true, st.get("passed"), String.valueOf(st.get("message")));
        long ascii = SelfTest.load(b).cases.stream().filter(c -> c.text.chars().allMatch(ch -> ch < 0x80)).count();
        assertEquals((int) ascii, st.get("cases"));
        assertTrue(ascii < b.selfTest.cases && ((String) st.get("message")).contains("skipped"), "the non-ASCII cases are skipped and said so");
        assertTrue(e[0].texts.containsAll(List.of("film number 0 was fine", "film number 11 was fine")), "the engine got the eval texts themselves");
        // a text-in engine that does not reproduce the export fails the same way
        doc = BenchmarkRunner.run(b, (bundle, t) -> new TextStandIn(b.labels.size()).replayingTexts(bundle).off((float) (2 * b.selfTest.atol)),
                new BenchmarkRunner.Settings(1, 10, 2, "real", 0), ex, device(), null);
        assertEquals(false, ((Map<String, Object>) doc.get("self_test")).get("passed"));
        assertEquals("failed", ((Map<String, Object>) doc.get("result")).get("status"));
        // and a pair task cannot be timed text-in
        List<BenchmarkRunner.Example> pairs = List.of(new BenchmarkRunner.Example("a", "b", null));
        doc = BenchmarkRunner.run(b, (bundle, t) -> new TextStandIn(b.labels.size()), new BenchmarkRunner.Settings(1, 3, 0, "real", 0), pairs, device(), null);
        assertTrue(((String) ((Map<String, Object>) doc.get("result")).get("reason")).contains("one text"));
    }

    /** A copy of the test bundle whose selftest.json is edited (its sha256 in metadata.json updated to match). */
    @SuppressWarnings("unchecked")
    static BundleManifest withSelfTest(java.util.function.Consumer<Map<String, Object>> edit) throws Exception {
        java.io.File dir = Fixtures.copyBundle(java.nio.file.Files.createTempDirectory("selftest").toFile());
        java.io.File st = new java.io.File(dir, "selftest.json"), meta = new java.io.File(dir, "metadata.json");
        String old = BundleManifest.sha256(st);
        Map<String, Object> doc = (Map<String, Object>) Json.parse(new String(java.nio.file.Files.readAllBytes(st.toPath()), java.nio.charset.StandardCharsets.UTF_8));
        edit.accept(doc);
        java.nio.file.Files.write(st.toPath(), Json.write(doc).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        String m = new String(java.nio.file.Files.readAllBytes(meta.toPath()), java.nio.charset.StandardCharsets.UTF_8);
        java.nio.file.Files.write(meta.toPath(), m.replace(old, BundleManifest.sha256(st)).getBytes(java.nio.charset.StandardCharsets.UTF_8));
        return BundleManifest.load(dir);
    }

    @Test
    @SuppressWarnings("unchecked")
    void idsTheTokenizerDoesNotGiveAndAnUnreadableSelfTestFailTheRun() throws Exception {
        BundleManifest b = withSelfTest(doc -> {
            List<Object> ids = (List<Object>) ((Map<String, Object>) ((List<Object>) doc.get("cases")).get(0)).get("input_ids");
            ids.set(1, 0L);  // [PAD] where the tokenizer puts a word
        });
        StandInEngine[] e = new StandInEngine[1];
        Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, t) -> e[0] = new StandInEngine(b.labels.size()).replaying(bundle),
                new BenchmarkRunner.Settings(1, 5, 1, "fixed", 0), null, device(), null);
        Map<String, Object> st = (Map<String, Object>) doc.get("self_test");
        assertEquals(false, st.get("passed"));
        assertTrue(((String) st.get("message")).contains("case 0") && ((String) st.get("message")).contains("tokenizes differently"), (String) st.get("message"));
        assertEquals("failed", ((Map<String, Object>) doc.get("result")).get("status"));
        BundleManifest wrongKind = withSelfTest(d -> d.put("outputs_kind", b.outputsKind.equals("logits") ? "probabilities" : "logits"));
        doc = BenchmarkRunner.run(wrongKind, (bundle, t) -> new StandInEngine(b.labels.size()).replaying(b), new BenchmarkRunner.Settings(1, 5, 1, "fixed", 0), null, device(), null);
        st = (Map<String, Object>) doc.get("self_test");
        assertEquals(false, st.get("passed"));
        assertEquals(0, st.get("cases"));
        assertTrue(((String) st.get("message")).contains("export the bundle again"), (String) st.get("message"));
        assertEquals("failed", ((Map<String, Object>) doc.get("result")).get("status"));
    }
}
