package android;
public final class R { public static final class attr { public static final int progressBarStyleHorizontal = 1; } }
