package org.tinybertedge.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small JSON reader and writer: metadata.json, golden fixtures and benchmark results.
 * The core stays free of Android's org.json so that it builds and tests on a plain JVM.
 * Objects become LinkedHashMap, arrays ArrayList, numbers Long (integral) or Double.
 */
public final class Json {
    private final String s;
    private int i;

    private Json(String s) {
        this.s = s;
    }

    /**
     * Parses one JSON document.
     *
     * @param text the document
     * @return Map, List, String, Long, Double, Boolean or null
     * @throws IllegalArgumentException on malformed JSON, with the offset
     */
    public static Object parse(String text) {
        Json p = new Json(text);
        p.ws();
        Object v = p.value();
        p.ws();
        if (p.i != text.length()) throw p.error("trailing characters");
        return v;
    }

    private IllegalArgumentException error(String what) {
        return new IllegalArgumentException("malformed JSON at offset " + i + ": " + what);
    }

    private void ws() {
        while (i < s.length() && (s.charAt(i) == ' ' || s.charAt(i) == '\n' || s.charAt(i) == '\r' || s.charAt(i) == '\t')) i++;
    }

    private Object value() {
        if (i >= s.length()) throw error("unexpected end");
        char c = s.charAt(i);
        if (c == '{') return object();
        if (c == '[') return array();
        if (c == '"') return string();
        if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
        if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
        if (s.startsWith("null", i)) { i += 4; return null; }
        if (s.startsWith("NaN", i)) { i += 3; return Double.NaN; }
        return number();
    }

    private Map<String, Object> object() {
        Map<String, Object> m = new LinkedHashMap<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == '}') { i++; return m; }
        while (true) {
            ws();
            if (i >= s.length() || s.charAt(i) != '"') throw error("expected a key");
            String k = string();
            ws();
            if (i >= s.length() || s.charAt(i) != ':') throw error("expected ':'");
            i++;
            ws();
            m.put(k, value());
            ws();
            if (i >= s.length()) throw error("unclosed object");
            char c = s.charAt(i++);
            if (c == '}') return m;
            if (c != ',') throw error("expected ',' or '}'");
        }
    }

    private List<Object> array() {
        List<Object> a = new ArrayList<>();
        i++;
        ws();
        if (i < s.length() && s.charAt(i) == ']') { i++; return a; }
        while (true) {
            ws();
            a.add(value());
            ws();
            if (i >= s.length()) throw error("unclosed array");
            char c = s.charAt(i++);
            if (c == ']') return a;
            if (c != ',') throw error("expected ',' or ']'");
        }
    }

    private String string() {
        StringBuilder b = new StringBuilder();
        i++;
        while (true) {
            if (i >= s.length()) throw error("unclosed string");
            char c = s.charAt(i++);
            if (c == '"') return b.toString();
            if (c != '\\') { b.append(c); continue; }
            if (i >= s.length()) throw error("bad escape");
            char e = s.charAt(i++);
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) throw error("bad \\u escape");
                    b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));  // surrogate halves pair up in the builder
                    i += 4;
                    break;
                default: throw error("bad escape \\" + e);
            }
        }
    }

    private Object number() {
        int start = i;
        boolean integral = true;
        if (i < s.length() && (s.charAt(i) == '-' || s.charAt(i) == '+')) i++;
        if (s.startsWith("Infinity", i)) { i += 8; return s.charAt(start) == '-' ? Double.NEGATIVE_INFINITY : Double.POSITIVE_INFINITY; }
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c >= '0' && c <= '9') { i++; continue; }
            if (c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+') { integral = false; i++; continue; }
            break;
        }
        if (start == i) throw error("unexpected character '" + s.charAt(i) + "'");
        String t = s.substring(start, i);
        try {
            return integral ? (Object) Long.parseLong(t) : (Object) Double.parseDouble(t);
        } catch (NumberFormatException ex) {
            throw error("bad number " + t);
        }
    }

    /**
     * Writes a value as JSON (Map, List, arrays of primitives, String, Number, Boolean, null).
     *
     * @param v the value
     * @return the JSON text
     */
    public static String write(Object v) {
        StringBuilder b = new StringBuilder();
        write(v, b);
        return b.toString();
    }

    @SuppressWarnings("unchecked")
    private static void write(Object v, StringBuilder b) {
        if (v == null) { b.append("null"); return; }
        if (v instanceof String) { quote((String) v, b); return; }
        if (v instanceof Boolean || v instanceof Integer || v instanceof Long) { b.append(v); return; }
        if (v instanceof Number) {
            double d = ((Number) v).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) { b.append("null"); return; }
            b.append(d);
            return;
        }
        if (v instanceof Map) {
            b.append('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : ((Map<String, Object>) v).entrySet()) {
                if (!first) b.append(", ");
                first = false;
                quote(e.getKey(), b);
                b.append(": ");
                write(e.getValue(), b);
            }
            b.append('}');
            return;
        }
        if (v instanceof List) {
            b.append('[');
            boolean first = true;
            for (Object o : (List<Object>) v) {
                if (!first) b.append(", ");
                first = false;
                write(o, b);
            }
            b.append(']');
            return;
        }
        if (v instanceof double[]) { List<Object> l = new ArrayList<>(); for (double d : (double[]) v) l.add(d); write(l, b); return; }
        if (v instanceof float[]) { List<Object> l = new ArrayList<>(); for (float f : (float[]) v) l.add((double) f); write(l, b); return; }
        if (v instanceof int[]) { List<Object> l = new ArrayList<>(); for (int x : (int[]) v) l.add(x); write(l, b); return; }
        throw new IllegalArgumentException("cannot write " + v.getClass() + " as JSON");
    }

    private static void quote(String s, StringBuilder b) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c == '\n') b.append("\\n");
            else if (c == '\r') b.append("\\r");
            else if (c == '\t') b.append("\\t");
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        b.append('"');
    }

    // typed getters used by the manifest reader: they name the missing or mistyped key

    static Object get(Map<String, Object> m, String key, String where) throws BundleException {
        if (m == null || !m.containsKey(key)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + " has no \"" + key + "\"; export the bundle again with tinybert-edge export");
        }
        return m.get(key);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(Map<String, Object> m, String key, String where) throws BundleException {
        Object v = get(m, key, where);
        if (!(v instanceof Map)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"" + key + "\" is not an object");
        return (Map<String, Object>) v;
    }

    static String str(Map<String, Object> m, String key, String where) throws BundleException {
        Object v = get(m, key, where);
        if (!(v instanceof String)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"" + key + "\" is not a string");
        return (String) v;
    }

    static long num(Map<String, Object> m, String key, String where) throws BundleException {
        Object v = get(m, key, where);
        if (!(v instanceof Long)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"" + key + "\" is not an integer");
        return (Long) v;
    }

    static double dbl(Map<String, Object> m, String key, String where) throws BundleException {
        Object v = get(m, key, where);
        if (!(v instanceof Long) && !(v instanceof Double)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"" + key + "\" is not a number");
        return ((Number) v).doubleValue();
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Map<String, Object> m, String key, String where) throws BundleException {
        Object v = get(m, key, where);
        if (!(v instanceof List)) throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": \"" + key + "\" is not a list");
        return (List<Object>) v;
    }
}
