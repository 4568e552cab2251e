package org.tinybertedge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The benchmark mode's core on a real bundle. The engine is a stand-in: ExecuTorch's and
 * LiteRT's Android runtimes cannot exist on this JVM (no phone, no Android SDK). It derives its
 * logits from the inputs it is given, so tokenization, padding, timing, accuracy and the results
 * document are real; the numbers it writes are the stand-in's, not a phone's.
 */
class BenchmarkRunnerTest {
    static final class StandInEngine implements InferenceEngine {
        final int labels;
        final List<Integer> lengths = new ArrayList<>();

        StandInEngine(int labels) {
            this.labels = labels;
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
            return l;
        }

        @Override
        public void close() {
        }
    }

    static Map<String, Object> device() {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("manufacturer", "none");
        d.put("model", "JVM test (no phone)");
        d.put("abi", System.getProperty("os.arch"));
        d.put("android_sdk", null);
        d.put("cores", Runtime.getRuntime().availableProcessors());
        return d;
    }

    @Test
    @SuppressWarnings("unchecked")
    void writesAResultsDocumentThePythonHarnessMerges() throws Exception {
        BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        List<BenchmarkRunner.Example> ex = new ArrayList<>();
        for (int i = 0; i < 30; i++) ex.add(new BenchmarkRunner.Example("film number " + i + " was " + (i % 2 == 0 ? "great" : "awful fun"), null, b.labels.get(i % b.labels.size())));
        StandInEngine[] engine = new StandInEngine[1];
        Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, threads) -> engine[0] = new StandInEngine(bundle.labels.size()),
                new BenchmarkRunner.Settings(2, 20, 3, "real", 0), ex, device(), () -> 42.0);
        Map<String, Object> r = (Map<String, Object>) doc.get("result");
        assertEquals("ok", r.get("status"), String.valueOf(r.get("reason")));
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
        r = (Map<String, Object>) doc.get("result");
        assertEquals("failed", r.get("status"));
        assertTrue(((String) r.get("reason")).contains("logits for"));
        List<BenchmarkRunner.Example> ex = BenchmarkRunner.Example.parseTsv("nope\ta text\n");
        doc = BenchmarkRunner.run(b, (bundle, t) -> new StandInEngine(b.labels.size()), new BenchmarkRunner.Settings(1, 5, 1, "real", 0), ex, device(), null);
        r = (Map<String, Object>) doc.get("result");
        assertTrue(((String) r.get("reason")).contains("unknown to the model"), String.valueOf(r.get("reason")));
    }

    @Test
    void fixedWorkloadWithoutDataUsesFullLengthSyntheticInputs() {
        try {
            BundleManifest b = BundleManifest.load(Fixtures.path("tinybert.bundle"));
            StandInEngine[] e = new StandInEngine[1];
            Map<String, Object> doc = BenchmarkRunner.run(b, (bundle, t) -> e[0] = new StandInEngine(b.labels.size()), new BenchmarkRunner.Settings(1, 10, 2, "fixed", 0), null, device(), null);
            assertEquals("ok", ((Map<?, ?>) doc.get("result")).get("status"));
            for (int len : e[0].lengths) assertEquals(b.maxSeqLen, len);
            assertEquals((double) b.maxSeqLen, ((Map<?, ?>) doc.get("result")).get("mean_input_tokens"));
        } catch (BundleException ex) {
            throw new AssertionError(ex);
        }
    }
}
