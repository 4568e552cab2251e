package com.google.mediapipe.tasks.components.containers;
public abstract class Classifications { public abstract java.util.List<Category> categories(); public abstract int headIndex(); public abstract java.util.Optional<String> headName(); }
