package com.google.mediapipe.framework;
public class MediaPipeException extends RuntimeException { public MediaPipeException(int statusCode, String message) { super(message); } public int getStatusCode() { return 0; } }
