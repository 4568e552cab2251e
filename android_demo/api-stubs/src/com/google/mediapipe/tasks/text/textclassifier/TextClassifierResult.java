package com.google.mediapipe.tasks.text.textclassifier;
public abstract class TextClassifierResult { public abstract com.google.mediapipe.tasks.components.containers.ClassificationResult classificationResult(); public abstract long timestampMs(); }
