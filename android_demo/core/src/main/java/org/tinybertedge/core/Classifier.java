package org.tinybertedge.core;

/**
 * Text in, label out: the bundle's tokenizer, its length policy, an engine, and the softmax when
 * the artifact outputs logits (probabilities pass through). A text-in engine (MediaPipe) gets the
 * text itself and tokenizes inside its runtime.
 */
public final class Classifier implements AutoCloseable {
    public final BundleManifest bundle;
    private final WordPieceTokenizer tokenizer;
    private final InferenceEngine engine;

    /**
     * @param bundle a verified bundle
     * @param engine an engine opened on that bundle
     */
    public Classifier(BundleManifest bundle, InferenceEngine engine) {
        this.bundle = bundle;
        this.tokenizer = bundle.tokenizer();
        this.engine = engine;
    }

    public WordPieceTokenizer tokenizer() {
        return tokenizer;
    }

    public InferenceEngine engine() {
        return engine;
    }

    /** The model's inputs for a text (pair may be null), truncated and padded as the Python kit does. */
    public PaddedInput inputs(String text, String pair) {
        Encoding e = tokenizer.encode(text, pair, bundle.maxSeqLen);
        return e.pad(bundle.policy.padLength(e.length()), bundle.tokenizerSettings.padId);
    }

    /**
     * Classifies one text (or a pair).
     *
     * @param text the text; longer than max_seq_len tokens is truncated, as in Python
     * @param pair the second text of a pair task, or null
     * @return the prediction
     * @throws InferenceException when the runtime fails or returns outputs of the wrong length,
     *     or a text-in engine is given a sentence pair
     */
    public Prediction classify(String text, String pair) throws InferenceException {
        float[] scores;
        int tokens;
        long t0;
        if (engine.takesText()) {
            if (pair != null) {
                throw new InferenceException(engine.backend() + " takes one text, not a sentence pair; use the ExecuTorch or LiteRT backend for pair tasks");
            }
            tokens = tokenizer.encode(text, null, bundle.maxSeqLen).length();  // what the runtime's own tokenizer should see
            t0 = System.nanoTime();
            scores = engine.classifyText(text);
        } else {
            PaddedInput in = inputs(text, pair);
            tokens = in.realTokens;
            t0 = System.nanoTime();
            scores = engine.run(in);
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        Postprocess.checkLogits(scores, bundle.labels.size());
        double[] p = bundle.probabilities(scores);
        int[] rank = Postprocess.topK(p, p.length);
        return new Prediction(bundle.labels.get(rank[0]), rank[0], p, rank, ms, tokens);
    }

    @Override
    public void close() {
        engine.close();
    }
}
