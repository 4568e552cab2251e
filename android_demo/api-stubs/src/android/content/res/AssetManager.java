package android.content.res;
public class AssetManager { public String[] list(String p) throws java.io.IOException { return null; } public java.io.InputStream open(String p) throws java.io.IOException { return null; } }
