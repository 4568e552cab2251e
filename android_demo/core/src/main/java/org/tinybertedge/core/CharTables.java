package org.tinybertedge.core;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The character classes of HF tokenizers' BertNormalizer and BertPreTokenizer, read from
 * bert_char_tables.txt (written by the Python kit: python -m tinybert_edge.converters.golden --tables).
 *
 * <p>Why a table and not java.lang.Character: HF's classes mix Unicode versions (old category
 * tables, a newer lowercase), so a JVM's or a phone's own Unicode data disagrees with the Python
 * tokenizer on hundreds of code points, which would give different ids for the same text.
 */
public final class CharTables {
    private final int[][] removed, whitespace, punctuation, cjk, marks;
    private final Map<Integer, String> accents, lower;

    private CharTables(Map<Character, List<int[]>> ranges, Map<Integer, String> accents, Map<Integer, String> lower) {
        this.removed = toArray(ranges.get('R'));
        this.whitespace = toArray(ranges.get('W'));
        this.punctuation = toArray(ranges.get('P'));
        this.cjk = toArray(ranges.get('C'));
        this.marks = toArray(ranges.get('M'));
        this.accents = accents;
        this.lower = lower;
    }

    private static int[][] toArray(List<int[]> l) {
        int[][] a = l == null ? new int[0][] : l.toArray(new int[0][]);
        Arrays.sort(a, (x, y) -> Integer.compare(x[0], y[0]));
        return a;
    }

    private static CharTables defaults;

    /**
     * The tables shipped with the core (a classpath resource).
     *
     * @return the tables
     * @throws IllegalStateException when the resource is missing from the build
     */
    public static synchronized CharTables defaults() {
        if (defaults == null) {
            try (InputStream in = CharTables.class.getResourceAsStream("bert_char_tables.txt")) {
                if (in == null) throw new IllegalStateException("bert_char_tables.txt is missing from the core's resources; rebuild the core module");
                defaults = read(in);
            } catch (IOException e) {
                throw new IllegalStateException("cannot read bert_char_tables.txt: " + e.getMessage(), e);
            }
        }
        return defaults;
    }

    /**
     * Reads tables in the format written by converters.golden.char_tables().
     *
     * @param in the table text (UTF-8)
     * @return the tables
     * @throws IOException on a read error
     * @throws IllegalArgumentException on a malformed line
     */
    public static CharTables read(InputStream in) throws IOException {
        Map<Character, List<int[]>> ranges = new HashMap<>();
        Map<Integer, String> accents = new HashMap<>(), lower = new HashMap<>();
        BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        String line;
        int n = 0;
        while ((line = r.readLine()) != null) {
            n++;
            if (line.isEmpty() || line.startsWith("#")) continue;
            String[] f = line.split(" ");
            char kind = f[0].charAt(0);
            try {
                if (kind == 'A' || kind == 'L') {
                    StringBuilder b = new StringBuilder();
                    for (int k = 2; k < f.length; k++) b.appendCodePoint(Integer.parseInt(f[k], 16));
                    (kind == 'A' ? accents : lower).put(Integer.parseInt(f[1], 16), b.toString());
                } else {
                    String[] lohi = f[1].split("-");
                    ranges.computeIfAbsent(kind, k -> new ArrayList<>()).add(new int[]{Integer.parseInt(lohi[0], 16), Integer.parseInt(lohi[1], 16)});
                }
            } catch (RuntimeException e) {
                throw new IllegalArgumentException("bert_char_tables.txt line " + n + " is malformed: " + line);
            }
        }
        return new CharTables(ranges, accents, lower);
    }

    private static boolean in(int[][] ranges, int cp) {
        int lo = 0, hi = ranges.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (cp < ranges[mid][0]) hi = mid - 1;
            else if (cp > ranges[mid][1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /** Removed by clean_text: NUL, U+FFFD, controls, format characters, private use. */
    public boolean isRemoved(int cp) { return in(removed, cp); }

    /** Whitespace: becomes ' ' in clean_text and separates words. */
    public boolean isWhitespace(int cp) { return in(whitespace, cp); }

    /** Punctuation (ASCII punctuation and Unicode P*): always a word of its own. */
    public boolean isPunctuation(int cp) { return in(punctuation, cp); }

    /** CJK ideograph: surrounded by spaces, so each is a word. */
    public boolean isCjk(int cp) { return in(cjk, cp); }

    /**
     * strip_accents of one code point: NFD without non-spacing marks.
     *
     * @param cp the code point
     * @param out where the result is appended
     */
    public void stripAccents(int cp, StringBuilder out) {
        if (in(marks, cp)) return;
        if (cp >= 0xAC00 && cp <= 0xD7A3) {  // Hangul syllable: canonical decomposition into jamo (Unicode ch. 3.12)
            int s = cp - 0xAC00;
            out.appendCodePoint(0x1100 + s / 588).appendCodePoint(0x1161 + (s % 588) / 28);
            if (s % 28 != 0) out.appendCodePoint(0x11A7 + s % 28);
            return;
        }
        String m = accents.get(cp);
        if (m != null) out.append(m);
        else out.appendCodePoint(cp);
    }

    /**
     * Lowercase of one code point (full mapping: U+0130 gives two code points).
     *
     * @param cp the code point
     * @param out where the result is appended
     */
    public void lowercase(int cp, StringBuilder out) {
        String m = lower.get(cp);
        if (m != null) out.append(m);
        else out.appendCodePoint(cp);
    }
}
