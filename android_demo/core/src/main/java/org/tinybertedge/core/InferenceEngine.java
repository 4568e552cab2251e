package org.tinybertedge.core;

/**
 * One runtime running one bundle's artifact at batch 1. Implementations: engine-executorch
 * (org.pytorch.executorch Module, int64 inputs) and engine-litert (LiteRT Interpreter with
 * XNNPACK, int32 inputs). Each picks the method or signature of the input's padded length from
 * {@link BundleManifest#signatures}.
 */
public interface InferenceEngine extends AutoCloseable {
    /** "executorch" or "tflite", as in the bench report's backend column. */
    String backend();

    /**
     * Runs the model.
     *
     * @param input padded to a length the bundle's policy produces
     * @return the logits of the one example
     * @throws InferenceException when the runtime fails or the length has no signature
     */
    float[] run(PaddedInput input) throws InferenceException;

    @Override
    void close();

    /** Opens an engine for a bundle; the benchmark times this as the load time. */
    interface Factory {
        InferenceEngine open(BundleManifest bundle, int threads) throws TinyBertEdgeException;
    }
}
