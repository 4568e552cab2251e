package org.tinybertedge.demo;
public final class BuildConfig { public static final String VERSION_NAME = "0.1.0", EXECUTORCH_VERSION = "1.5.1", LITERT_VERSION = "2.3.0", MEDIAPIPE_TASKS_VERSION = "1.1.0"; }
