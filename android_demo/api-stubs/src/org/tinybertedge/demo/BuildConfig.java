package org.tinybertedge.demo;
public final class BuildConfig { public static final String VERSION_NAME = "0.1.0", EXECUTORCH_VERSION = "1.0.1", LITERT_VERSION = "1.4.0"; }
