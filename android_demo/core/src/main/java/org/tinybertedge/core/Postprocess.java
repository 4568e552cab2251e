package org.tinybertedge.core;

import java.util.Arrays;

/**
 * Model outputs -> probabilities -> ranked labels, with the checks an app needs before it trusts a
 * runtime's output. A bundle says what its artifact outputs (metadata.json outputs[0].kind):
 * "logits" get the softmax here, "probabilities" (softmax inside the model) pass through.
 */
public final class Postprocess {
    private Postprocess() {
    }

    /**
     * Numerically stable softmax in double precision (the Python kit's converters.runtime.softmax).
     *
     * @param logits one row of logits
     * @return probabilities summing to 1
     */
    public static double[] softmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float x : logits) max = Math.max(max, x);
        double[] p = new double[logits.length];
        double sum = 0;
        for (int k = 0; k < logits.length; k++) {
            p[k] = Math.exp(logits[k] - max);
            sum += p[k];
        }
        for (int k = 0; k < p.length; k++) p[k] /= sum;
        return p;
    }

    /**
     * Probabilities from one row of model outputs of the given kind.
     *
     * @param scores what the runtime returned, in label order
     * @param outputsKind "logits" (softmax applied here) or "probabilities" (returned as they are)
     * @return class probabilities
     * @throws IllegalArgumentException on another kind
     */
    public static double[] probabilities(float[] scores, String outputsKind) {
        if ("logits".equals(outputsKind)) return softmax(scores);
        if (!"probabilities".equals(outputsKind)) throw new IllegalArgumentException("unknown output kind " + outputsKind + " (logits or probabilities)");
        double[] p = new double[scores.length];
        for (int k = 0; k < p.length; k++) p[k] = scores[k];
        return p;
    }

    /**
     * Class ids by descending probability; ties keep the lower id first (numpy's stable argsort of -p).
     *
     * @param probabilities class probabilities
     * @param k how many to return (clamped to the number of classes)
     * @return the top-k class ids
     */
    public static int[] topK(double[] probabilities, int k) {
        Integer[] idx = new Integer[probabilities.length];
        for (int i = 0; i < idx.length; i++) idx[i] = i;
        Arrays.sort(idx, (a, b) -> Double.compare(probabilities[b], probabilities[a]));  // stable for ties
        int n = Math.max(0, Math.min(k, idx.length));
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = idx[i];
        return out;
    }

    /**
     * Refuses outputs (logits or probabilities) that do not match the bundle's labels.
     *
     * @param logits what the runtime returned
     * @param numLabels labels in the bundle
     * @throws InferenceException on a length mismatch or a non-finite value
     */
    public static void checkLogits(float[] logits, int numLabels) throws InferenceException {
        if (logits == null || logits.length != numLabels) {
            throw new InferenceException("the model returned " + (logits == null ? "no" : String.valueOf(logits.length)) + " logits for " + numLabels
                    + " labels; the artifact does not belong to this bundle's labels.txt, export the bundle again");
        }
        for (float x : logits) {
            if (Float.isNaN(x) || Float.isInfinite(x)) throw new InferenceException("the model returned a non-finite logit " + x + "; the artifact is broken, export it again");
        }
    }
}
