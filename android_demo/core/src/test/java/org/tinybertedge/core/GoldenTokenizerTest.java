package org.tinybertedge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The core's tokenizer and post-processing against the Python kit's golden vectors of the same bundle. */
class GoldenTokenizerTest {
    static WordPieceTokenizer tok;
    static BundleManifest bundle;
    static Map<String, Object> g;

    @BeforeAll
    static void load() throws Exception {
        g = Fixtures.golden();
        bundle = BundleManifest.load(Fixtures.path("tinybert.bundle"));
        tok = bundle.tokenizer();
        assertEquals(((Number) g.get("max_seq_len")).intValue(), bundle.maxSeqLen);
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> list(String key) {
        return (List<Map<String, Object>>) g.get(key);
    }

    @Test
    void everyHardCaseGivesThePythonIdsMaskAndTypeIds() {
        List<Map<String, Object>> cases = list("cases");
        assertTrue(cases.size() >= 15, "the golden file holds the hard cases");
        for (Map<String, Object> c : cases) {
            String name = (String) c.get("name");
            Encoding e = tok.encode((String) c.get("text"), (String) c.get("text_pair"), bundle.maxSeqLen);
            assertArrayEquals(Fixtures.ints(c.get("input_ids")), e.inputIds, name + ": input ids");
            assertArrayEquals(Fixtures.ints(c.get("token_type_ids")), e.tokenTypeIds, name + ": token type ids");
            int len = bundle.policy.padLength(e.length());
            assertEquals(((Number) c.get("padded_length")).intValue(), len, name + ": padded length");
            PaddedInput p = e.pad(len, bundle.tokenizerSettings.padId);
            assertArrayEquals(Fixtures.ints(c.get("padded_input_ids")), p.inputIds, name + ": padded ids");
            assertArrayEquals(Fixtures.ints(c.get("attention_mask")), p.attentionMask, name + ": attention mask");
            assertArrayEquals(Fixtures.ints(c.get("padded_token_type_ids")), p.tokenTypeIds, name + ": padded type ids");
        }
    }

    @Test
    void longTextIsTruncatedToMaxLengthAsPythonDoes() {
        Encoding e = tok.encode(String.join(" ", java.util.Collections.nCopies(1000, "brilliant")), bundle.maxSeqLen);
        assertEquals(bundle.maxSeqLen, e.length());
        assertEquals(bundle.vocab.get("[SEP]").intValue(), e.inputIds[e.length() - 1]);
    }

    @Test
    void tenThousandRandomStringsGiveThePythonIds() {
        List<Map<String, Object>> rnd = list("random");
        assertTrue(rnd.size() >= 10_000, "at least 10,000 generated strings, got " + rnd.size());
        List<String> diffs = new ArrayList<>();
        int same = 0;
        for (Map<String, Object> r : rnd) {
            String text = (String) r.get("text");
            int[] want = Fixtures.ints(r.get("input_ids"));
            int[] got = tok.encode(text, bundle.maxSeqLen).inputIds;
            if (java.util.Arrays.equals(want, got)) same++;
            else if (diffs.size() < 5) diffs.add(escape(text) + " python=" + java.util.Arrays.toString(want) + " core=" + java.util.Arrays.toString(got));
        }
        System.out.println("random strings: " + same + " of " + rnd.size() + " tokenized exactly as in Python");
        assertEquals(rnd.size(), same, "strings whose ids differ from Python's, first ones:\n" + String.join("\n", diffs));
    }

    static String escape(String s) {
        StringBuilder b = new StringBuilder();
        s.codePoints().forEach(cp -> {
            if (cp >= 0x20 && cp < 0x7f) b.appendCodePoint(cp);
            else b.append(String.format("\\u{%x}", cp));
        });
        return b.toString();
    }

    @Test
    void runtimeOutputsGiveThePythonProbabilitiesRankingAndLabel() {
        int checked = 0;
        for (Map<String, Object> c : list("cases")) {
            if (!c.containsKey("logits")) continue;
            double[] l = Fixtures.doubles(c.get("logits"));
            float[] logits = new float[l.length];
            for (int i = 0; i < l.length; i++) logits[i] = (float) l[i];
            // "logits" is what the runtime returned: logits (.pte) or probabilities (.tflite with softmax
            // inside, schema v2); the bundle's output kind decides whether the app applies softmax
            double[] p = bundle.probabilities(logits);
            double[] want = Fixtures.doubles(c.get("probabilities"));
            for (int i = 0; i < p.length; i++) assertEquals(want[i], p[i], 1e-7, c.get("name") + ": probability " + i);
            assertArrayEquals(Fixtures.ints(c.get("top_k")), Postprocess.topK(p, p.length), c.get("name") + ": ranking");
            assertEquals(c.get("label"), bundle.labels.get(Postprocess.topK(p, 1)[0]));
            checked++;
        }
        assertTrue(checked > 0, "the golden file has logits");
    }

    @Test
    void latencyStatisticsUseTheHarnessMath() {
        for (Map<String, Object> c : list("latency")) {
            LatencyStats s = LatencyStats.of(Fixtures.doubles(c.get("ms")));
            Map<String, Object> want = (Map<String, Object>) c.get("stats");
            Map<String, Object> got = s.toMap();
            for (String k : new String[]{"p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "trimmed_mean_ms"}) {
                double w = ((Number) want.get(k)).doubleValue();
                assertEquals(w, ((Number) got.get(k)).doubleValue(), 1e-9 * Math.max(1, Math.abs(w)), k + " of " + s.runs + " runs");
            }
            assertEquals(((Number) want.get("runs")).intValue(), s.runs);
        }
    }
}
