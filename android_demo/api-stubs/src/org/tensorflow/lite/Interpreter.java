package org.tensorflow.lite;
import java.io.File; import java.util.Map;
public class Interpreter implements AutoCloseable {
  public static class Options { public Options setNumThreads(int n) { return this; } public Options setUseXNNPACK(boolean b) { return this; } }
  public Interpreter(File f, Options o) {}
  public String[] getSignatureKeys() { return null; }
  public String[] getSignatureInputs(String k) { return null; }
  public String[] getSignatureOutputs(String k) { return null; }
  public Tensor getOutputTensorFromSignature(String o, String k) { return null; }
  public void runSignature(Map<String, Object> in, Map<String, Object> out, String k) {}
  public void close() {}
}
