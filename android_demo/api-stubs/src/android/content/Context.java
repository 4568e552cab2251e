package android.content;
public class Context { public android.content.res.AssetManager getAssets() { return null; } public java.io.File getFilesDir() { return null; } public java.io.File getExternalFilesDir(String t) { return null; } public String getString(int id) { return null; } public String getString(int id, Object... a) { return null; } }
