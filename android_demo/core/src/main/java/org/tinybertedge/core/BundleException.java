package org.tinybertedge.core;

/** A bundle that cannot be used: what is wrong is in {@link #reason}, the fix in the message. */
public final class BundleException extends TinyBertEdgeException {
    /** What is wrong with the bundle. */
    public enum Reason {
        MISSING_FILE, SHA256_MISMATCH, BAD_METADATA, UNKNOWN_DTYPE, BAD_MAX_SEQ_LEN, BAD_VOCAB, LABELS_MISMATCH,
        FAILED_VALIDATION
    }

    public final Reason reason;

    public BundleException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }
}
