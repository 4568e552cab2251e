package org.tinybertedge.core;

/**
 * One runtime running one bundle's artifact at batch 1. Implementations: engine-executorch
 * (org.pytorch.executorch Module, int64 inputs), engine-litert (LiteRT Interpreter with XNNPACK,
 * int32 inputs), each picking the method or signature of the input's padded length from
 * {@link BundleManifest#signatures}; and engine-mediapipe (MediaPipe Tasks' TextClassifier), which
 * tokenizes inside its own graph and so takes raw text: it answers {@link #takesText()} with true
 * and implements {@link #classifyText(String)} instead of {@link #run(PaddedInput)}.
 *
 * <p>Every engine returns what the artifact outputs, in label order: logits or probabilities as
 * the bundle's {@link BundleManifest#outputsKind} says.
 */
public interface InferenceEngine extends AutoCloseable {
    /** "executorch", "tflite" or "mediapipe", as in the bench report's backend column. */
    String backend();

    /**
     * Runs the model on token ids.
     *
     * @param input padded to a length the bundle's policy produces
     * @return the outputs of the one example (logits or probabilities, per the bundle)
     * @throws InferenceException when the runtime fails or the length has no signature
     */
    float[] run(PaddedInput input) throws InferenceException;

    /**
     * True when the engine takes raw text ({@link #classifyText}) rather than token ids: its
     * runtime tokenizes (MediaPipe Tasks). The benchmark then times text in -> scores out.
     */
    default boolean takesText() {
        return false;
    }

    /**
     * Runs the model on raw text, tokenized by the runtime itself (text-in engines only).
     *
     * @param text one text (text-in runtimes take no sentence pairs)
     * @return the outputs of the one example, in label order
     * @throws InferenceException when the runtime fails, or the engine takes token ids
     */
    default float[] classifyText(String text) throws InferenceException {
        throw new InferenceException(backend() + " takes token ids, not text; call run(PaddedInput)");
    }

    @Override
    void close();

    /** Opens an engine for a bundle; the benchmark times this as the load time. */
    interface Factory {
        InferenceEngine open(BundleManifest bundle, int threads) throws TinyBertEdgeException;
    }
}
