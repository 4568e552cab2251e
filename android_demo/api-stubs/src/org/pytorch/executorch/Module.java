package org.pytorch.executorch;
public class Module implements java.io.Closeable {
  public static final int LOAD_MODE_FILE = 0; public static final int LOAD_MODE_MMAP = 1;
  public static Module load(String p, int mode, int threads) { return new Module(); }
  public EValue[] execute(String m, EValue... in) { return null; }
  public String[] getMethods() { return new String[0]; }
  /** executorch-android 1.4+: returns nothing, throws ExecutorchRuntimeException when the method cannot be loaded. */
  public void loadMethod(String m) {}
  public void destroy() {}
  public void close() {}
}
