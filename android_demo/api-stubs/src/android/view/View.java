package android.view;
public class View { public interface OnClickListener { void onClick(View v); } public View(android.content.Context c) {} public View(android.content.Context c, android.util.AttributeSet a, int s) {} public void setLayoutParams(ViewGroup.LayoutParams p) {} public ViewGroup.LayoutParams getLayoutParams() { return null; } }
