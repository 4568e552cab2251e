package org.tinybertedge.core;

import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;
import java.util.function.DoubleSupplier;

/**
 * The app's benchmark mode, free of Android: load time, first inference, the bundle's on-device
 * self-test, warm-up, timed runs, latency statistics and accuracy, returned as the results JSON
 * (schema tinybert-edge/bench-device v1) that `tinybert-edge bench --device adb` pulls and merges
 * into its report (schema tinybert-edge/bench). Failures become {"status": "failed", "reason":
 * ...}, never a crash.
 *
 * <p>Order: open the engine (timed: load_s), the first inference (timed: first_inference_ms, the
 * cold run right after load), then the self-test (selftest.json: every case through the engine,
 * compared with the exported outputs within the bundle's atol; written as the document's
 * "self_test"). A failed self-test ends the run with status "failed": no warm-up, no timed runs, so
 * no latency of an engine that computes something else is ever reported. Token-id engines time
 * ids in -> outputs out; text-in engines (MediaPipe) time text in -> scores out, their runtime's
 * tokenization included.
 */
public final class BenchmarkRunner {
    public static final String SCHEMA = "tinybert-edge/bench-device";
    public static final int SCHEMA_VERSION = 1;

    /** What to run: the intent extras of the benchmark mode. */
    public static final class Settings {
        public final int threads, iterations, warmup, maxExamples;
        /** "fixed" (every input padded to max_seq_len) or "real" (eval texts at their own lengths). */
        public final String workload;

        public Settings(int threads, int iterations, int warmup, String workload, int maxExamples) {
            this.threads = threads;
            this.iterations = iterations;
            this.warmup = warmup;
            this.workload = workload;
            this.maxExamples = maxExamples;
        }

        /** @throws IllegalArgumentException naming the bad setting */
        public void check() {
            if (threads < 1) throw new IllegalArgumentException("threads must be at least 1, got " + threads);
            if (iterations < 1) throw new IllegalArgumentException("iterations must be at least 1, got " + iterations);
            if (warmup < 0) throw new IllegalArgumentException("warmup must be 0 or more, got " + warmup);
            if (!workload.equals("fixed") && !workload.equals("real")) throw new IllegalArgumentException("workload must be fixed or real, got " + workload);
        }
    }

    /** One labelled eval text (label may be null: speed only). */
    public static final class Example {
        public final String text, pair, label;

        public Example(String text, String pair, String label) {
            this.text = text;
            this.pair = pair;
            this.label = label;
        }

        /**
         * Reads the eval file the host pushes: one example per line, label TAB text (TAB pair).
         *
         * @param content the file's text
         * @return the examples
         * @throws IllegalArgumentException on a line without a tab, naming the line
         */
        public static List<Example> parseTsv(String content) {
            List<Example> out = new ArrayList<>();
            String[] lines = content.split("\n");
            for (int i = 0; i < lines.length; i++) {
                String line = lines[i].endsWith("\r") ? lines[i].substring(0, lines[i].length() - 1) : lines[i];
                if (line.isEmpty()) continue;
                String[] f = line.split("\t", 3);
                if (f.length < 2) throw new IllegalArgumentException("eval file line " + (i + 1) + " has no tab; expected label<TAB>text[<TAB>pair]");
                out.add(new Example(f[1], f.length > 2 ? f[2] : null, f[0].isEmpty() ? null : f[0]));
            }
            return out;
        }
    }

    private BenchmarkRunner() {
    }

    /**
     * Runs the benchmark and returns the results document.
     *
     * @param bundle a verified bundle
     * @param factory opens the engine (timed as load)
     * @param s settings
     * @param examples eval texts (null or empty: synthetic full-length inputs, no accuracy)
     * @param device what the app knows of the device (manufacturer, model, abi, sdk, ...)
     * @param peakMemoryMb memory probe (Debug PSS on Android), or null
     * @return the results map, ready for Json.write; "self_test" is there when the bundle has one
     *     and the engine opened
     */
    public static Map<String, Object> run(BundleManifest bundle, InferenceEngine.Factory factory, Settings s,
                                          List<Example> examples, Map<String, Object> device, DoubleSupplier peakMemoryMb) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("schema", SCHEMA);
        doc.put("schema_version", SCHEMA_VERSION);
        doc.put("date", Instant.now().truncatedTo(ChronoUnit.SECONDS).toString());
        doc.put("device", device);
        Map<String, Object> b = new LinkedHashMap<>();
        b.put("name", bundle.dir.getName());
        b.put("format", bundle.format);
        b.put("quantization", bundle.quantization);
        b.put("artifact_sha256", bundle.artifactSha256());
        b.put("size_bytes", bundle.artifactBytes());
        Map<String, Object> policy = new LinkedHashMap<>();
        policy.put("kind", bundle.policy.kind);
        policy.put("max_len", bundle.policy.maxLen);
        policy.put("buckets", bundle.policy.buckets);
        b.put("seq_len_policy", policy);
        doc.put("bundle", b);
        Map<String, Object> settings = new LinkedHashMap<>();
        settings.put("threads", s.threads);
        settings.put("iterations", s.iterations);
        settings.put("warmup", s.warmup);
        settings.put("workload", s.workload);
        doc.put("settings", settings);
        Map<String, Object> result = new LinkedHashMap<>();
        try {
            s.check();
            result = measure(bundle, factory, s, examples, peakMemoryMb, doc);
        } catch (TinyBertEdgeException | RuntimeException e) {
            result.put("status", "failed");
            result.put("reason", e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        doc.put("result", result);
        return doc;
    }

    /** One timed call: token ids through run(), or text through classifyText(). */
    private interface Call {
        float[] run() throws InferenceException;

        /** The length the model runs at (padded length), for mean_input_tokens. */
        int tokens();
    }

    private static Call ids(InferenceEngine engine, PaddedInput in) {
        return new Call() {
            public float[] run() throws InferenceException {
                return engine.run(in);
            }

            public int tokens() {
                return in.length();
            }
        };
    }

    private static Call text(InferenceEngine engine, String text, int tokens) {
        return new Call() {
            public float[] run() throws InferenceException {
                return engine.classifyText(text);
            }

            public int tokens() {
                return tokens;
            }
        };
    }

    /** Synthetic text of whole vocabulary words, long enough to fill max_seq_len (text-in engines without data). */
    private static String syntheticText(BundleManifest bundle, Random rng) {
        List<String> words = new ArrayList<>();
        for (Map.Entry<String, Integer> e : bundle.vocab.entrySet()) {
            String w = e.getKey();
            if (!w.isEmpty() && !w.startsWith("##") && !w.startsWith("[") && w.chars().allMatch(Character::isLetter)) words.add(w);
        }
        java.util.Collections.sort(words);
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < bundle.maxSeqLen && !words.isEmpty(); i++) b.append(i == 0 ? "" : " ").append(words.get(rng.nextInt(words.size())));
        return b.toString();
    }

    private static Map<String, Object> measure(BundleManifest bundle, InferenceEngine.Factory factory, Settings s,
                                               List<Example> examples, DoubleSupplier peakMemoryMb, Map<String, Object> doc) throws TinyBertEdgeException {
        boolean haveData = examples != null && !examples.isEmpty();
        if (s.workload.equals("real") && !haveData) throw new IllegalArgumentException("the real workload needs eval texts; push them with --data");
        if (haveData && s.maxExamples > 0 && examples.size() > s.maxExamples) examples = examples.subList(0, s.maxExamples);
        long t0 = System.nanoTime();
        InferenceEngine engine = factory.open(bundle, s.threads);
        double loadS = (System.nanoTime() - t0) / 1e9;
        try (Classifier c = new Classifier(bundle, engine)) {
            boolean textIn = engine.takesText();
            List<Call> calls = new ArrayList<>();
            if (haveData) {
                for (Example e : examples) {
                    Encoding enc = c.tokenizer().encode(e.text, e.pair, bundle.maxSeqLen);
                    if (textIn) {
                        if (e.pair != null) throw new IllegalArgumentException(engine.backend() + " takes one text; the eval file has sentence pairs, use the ExecuTorch or LiteRT backend");
                        calls.add(text(engine, e.text, bundle.policy.padLength(enc.length())));
                    } else {
                        int len = s.workload.equals("fixed") ? bundle.maxSeqLen : bundle.policy.padLength(enc.length());
                        calls.add(ids(engine, enc.pad(len, bundle.tokenizerSettings.padId)));
                    }
                }
            } else {  // synthetic full-length inputs from the vocabulary, like the Python harness without data
                Random rng = new Random(0);
                for (int k = 0; k < 64; k++) {
                    if (textIn) {
                        calls.add(text(engine, syntheticText(bundle, rng), bundle.maxSeqLen));
                        continue;
                    }
                    int[] ids = new int[bundle.maxSeqLen];
                    ids[0] = bundle.vocab.get(bundle.tokenizerSettings.clsToken);
                    for (int i = 1; i < ids.length - 1; i++) ids[i] = rng.nextInt(bundle.vocab.size());
                    ids[ids.length - 1] = bundle.vocab.get(bundle.tokenizerSettings.sepToken);
                    calls.add(ids(engine, new Encoding(ids, new int[ids.length]).pad(ids.length, bundle.tokenizerSettings.padId)));
                }
            }
            long t = System.nanoTime();
            float[] first = calls.get(0).run();
            double firstMs = (System.nanoTime() - t) / 1e6;
            Postprocess.checkLogits(first, bundle.labels.size());
            if (bundle.selfTest != null) {  // before warm-up and timing: a runtime that computes something else is not timed
                SelfTest.Result st;
                try {
                    st = SelfTest.load(bundle).run(bundle, engine);
                } catch (BundleException e) {
                    st = SelfTest.Result.failed(e.getMessage());
                }
                doc.put("self_test", st.toMap());
                if (!st.passed) throw new InferenceException("the on-device self-test failed, nothing was timed: " + st.message);
            }
            for (int i = 0; i < s.warmup; i++) calls.get(i % calls.size()).run();
            int stride = Math.max(1, calls.size() / s.iterations);  // timed inputs spread over the eval file
            double[] ms = new double[s.iterations];
            double tokens = 0;
            for (int i = 0; i < s.iterations; i++) {
                Call call = calls.get((i * stride) % calls.size());
                t = System.nanoTime();
                call.run();
                ms[i] = (System.nanoTime() - t) / 1e6;
                tokens += call.tokens();
            }
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("status", "ok");
            r.put("backend", engine.backend());
            r.put("quantization", bundle.quantization);
            r.put("load_s", loadS);
            r.put("first_inference_ms", firstMs);
            r.putAll(LatencyStats.of(ms).toMap());
            r.put("size_bytes", bundle.artifactBytes());
            r.put("mean_input_tokens", tokens / s.iterations);
            if (haveData && examples.get(0).label != null) {
                TreeSet<String> unknown = new TreeSet<>();
                for (Example e : examples) if (e.label != null && !bundle.labels.contains(e.label)) unknown.add(e.label);
                if (!unknown.isEmpty()) throw new IllegalArgumentException("eval labels " + unknown + " are unknown to the model (labels " + bundle.labels + ")");
                int right = 0;
                for (int i = 0; i < examples.size(); i++) {
                    float[] scores = calls.get(i).run();
                    Postprocess.checkLogits(scores, bundle.labels.size());
                    int best = Postprocess.topK(bundle.probabilities(scores), 1)[0];
                    if (bundle.labels.get(best).equals(examples.get(i).label)) right++;
                }
                r.put("accuracy", (double) right / examples.size());
                r.put("accuracy_examples", examples.size());
            }
            if (peakMemoryMb != null) r.put("peak_pss_mb", peakMemoryMb.getAsDouble());
            return r;
        }
    }
}
