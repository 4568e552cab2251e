package org.tinybertedge.core;

/** Text in, label out: the bundle's tokenizer, its length policy, an engine, and softmax. */
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
     * @throws InferenceException when the runtime fails or returns logits of the wrong length
     */
    public Prediction classify(String text, String pair) throws InferenceException {
        PaddedInput in = inputs(text, pair);
        long t0 = System.nanoTime();
        float[] logits = engine.run(in);
        double ms = (System.nanoTime() - t0) / 1e6;
        Postprocess.checkLogits(logits, bundle.labels.size());
        double[] p = Postprocess.softmax(logits);
        int[] rank = Postprocess.topK(p, p.length);
        return new Prediction(bundle.labels.get(rank[0]), rank[0], p, rank, ms, in.realTokens);
    }

    @Override
    public void close() {
        engine.close();
    }
}
