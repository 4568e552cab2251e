package android.widget;
public class RadioGroup extends LinearLayout { public RadioGroup(android.content.Context c) { super(c); } public interface OnCheckedChangeListener { void onCheckedChanged(RadioGroup g, int id); } public void setOnCheckedChangeListener(OnCheckedChangeListener l) {} }
