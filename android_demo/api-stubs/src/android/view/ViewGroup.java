package android.view;
public class ViewGroup extends View { public ViewGroup(android.content.Context c) { super(c); } public void addView(View v) {} public void removeAllViews() {} public static class LayoutParams { public static final int WRAP_CONTENT = -2; public LayoutParams(int w, int h) {} } }
