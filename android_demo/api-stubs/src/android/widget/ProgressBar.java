package android.widget;
public class ProgressBar extends android.view.View { public ProgressBar(android.content.Context c, android.util.AttributeSet a, int s) { super(c, a, s); } public void setMax(int m) {} public int getMax() { return 0; } public void setProgress(int p) {} public int getProgress() { return 0; } }
