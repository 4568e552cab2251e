package org.tinybertedge.core;

/** One classified text: the best label, every class probability, and how long the model took. */
public final class Prediction {
    public final String label;
    public final int labelId;
    public final double[] probabilities;
    public final int[] ranking;
    public final double latencyMs;
    public final int tokens;

    public Prediction(String label, int labelId, double[] probabilities, int[] ranking, double latencyMs, int tokens) {
        this.label = label;
        this.labelId = labelId;
        this.probabilities = probabilities;
        this.ranking = ranking;
        this.latencyMs = latencyMs;
        this.tokens = tokens;
    }
}
