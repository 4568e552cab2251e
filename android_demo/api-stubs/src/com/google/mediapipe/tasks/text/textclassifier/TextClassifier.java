package com.google.mediapipe.tasks.text.textclassifier;
import android.content.Context; import com.google.mediapipe.tasks.core.BaseOptions;
public final class TextClassifier implements AutoCloseable {
  public static TextClassifier createFromFile(Context c, String modelPath) { return null; }
  public static TextClassifier createFromFile(Context c, java.io.File modelFile) throws java.io.IOException { return null; }
  public static TextClassifier createFromOptions(Context c, TextClassifierOptions o) { return null; }
  public TextClassifierResult classify(String inputText) { return null; }
  public void close() {}
  public abstract static class TextClassifierOptions {
    public static Builder builder() { return null; }
    public abstract static class Builder {
      public abstract Builder setBaseOptions(BaseOptions value);
      public abstract Builder setDisplayNamesLocale(String locale);
      public abstract Builder setMaxResults(Integer maxResults);
      public abstract Builder setScoreThreshold(Float scoreThreshold);
      public final TextClassifierOptions build() { return null; }
    }
  }
}
