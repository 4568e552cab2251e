package android.widget;
public class TextView extends android.view.View { public TextView(android.content.Context c) { super(c); } public void setText(CharSequence s) {} public CharSequence getText() { return ""; } public void setMinWidth(int w) {} public int getMinWidth() { return 0; } }
