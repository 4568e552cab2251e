package org.tinybertedge.core;

/** The runtime failed, or returned something the bundle does not describe (e.g. logits of the wrong length). */
public final class InferenceException extends TinyBertEdgeException {
    public InferenceException(String message) {
        super(message);
    }

    public InferenceException(String message, Throwable cause) {
        super(message, cause);
    }
}
