package org.tinybertedge.core;

/** Base of the core's typed errors; the message says what is wrong and how to fix it. */
public class TinyBertEdgeException extends Exception {
    public TinyBertEdgeException(String message) {
        super(message);
    }

    public TinyBertEdgeException(String message, Throwable cause) {
        super(message, cause);
    }
}
