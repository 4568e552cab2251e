package org.tinybertedge.demo;
public final class R { public static final class id { public static final int bundle_info=1, label=2, bars=3, latency=4, error=5, backend=6, backend_litert=7, backend_executorch=8, classify=9, text=10, backend_mediapipe=11; }
  public static final class layout { public static final int activity_main = 1; }
  public static final class string { public static final int no_bundle = 1, benchmark_running = 2; } }
