package org.tinybertedge.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * BERT's tokenizer, as HF tokenizers runs it for the bundle's model: BertNormalizer (clean text,
 * CJK padding, accent stripping, lowercasing), BertPreTokenizer (whitespace and punctuation
 * splits), greedy longest-match WordPiece with [UNK] for words it cannot cover, [CLS]/[SEP],
 * token type ids, and longest-first truncation to the maximum length.
 */
public final class WordPieceTokenizer {
    private final Map<String, Integer> vocab;
    private final TokenizerSettings settings;
    private final CharTables chars;
    private final int clsId, sepId, unkId;

    /**
     * @param vocab token -> id (vocab.txt line numbers)
     * @param settings the bundle's tokenizer settings
     * @param chars HF's character classes (normally CharTables.defaults())
     * @throws BundleException when the vocabulary lacks [CLS], [SEP] or [UNK]
     */
    public WordPieceTokenizer(Map<String, Integer> vocab, TokenizerSettings settings, CharTables chars) throws BundleException {
        this.vocab = vocab;
        this.settings = settings;
        this.chars = chars;
        for (String t : new String[]{settings.clsToken, settings.sepToken, settings.unkToken}) {
            if (!vocab.containsKey(t)) {
                throw new BundleException(BundleException.Reason.BAD_VOCAB, "vocab.txt has no " + t + " token; it is not the vocabulary of this bundle's model, export the bundle again");
            }
        }
        this.clsId = vocab.get(settings.clsToken);
        this.sepId = vocab.get(settings.sepToken);
        this.unkId = vocab.get(settings.unkToken);
    }

    /** The text after BertNormalizer. */
    public String normalize(String text) {
        StringBuilder b = new StringBuilder(text.length() + 8);
        text.codePoints().forEach(cp -> {
            if (settings.cleanText) {
                if (cp == 0 || cp == 0xFFFD || chars.isRemoved(cp)) return;
                if (chars.isWhitespace(cp)) cp = ' ';
            }
            if (settings.tokenizeChineseChars && chars.isCjk(cp)) b.append(' ').appendCodePoint(cp).append(' ');
            else b.appendCodePoint(cp);
        });
        String s = b.toString();
        if (settings.stripAccents) {
            StringBuilder a = new StringBuilder(s.length());
            s.codePoints().forEach(cp -> chars.stripAccents(cp, a));
            s = a.toString();
        }
        if (settings.doLowerCase) {
            StringBuilder l = new StringBuilder(s.length());
            s.codePoints().forEach(cp -> chars.lowercase(cp, l));
            s = l.toString();
        }
        return s;
    }

    /** Words after BertPreTokenizer: split on whitespace, each punctuation character alone. */
    List<String> words(String normalized) {
        List<String> out = new ArrayList<>();
        StringBuilder w = new StringBuilder();
        int k = 0;
        while (k < normalized.length()) {
            int cp = normalized.codePointAt(k);
            k += Character.charCount(cp);
            if (chars.isWhitespace(cp)) {
                flush(w, out);
            } else if (chars.isPunctuation(cp)) {
                flush(w, out);
                out.add(new String(Character.toChars(cp)));
            } else {
                w.appendCodePoint(cp);
            }
        }
        flush(w, out);
        return out;
    }

    private static void flush(StringBuilder w, List<String> out) {
        if (w.length() > 0) {
            out.add(w.toString());
            w.setLength(0);
        }
    }

    /** Greedy longest-match-first WordPiece of one word; the whole word is [UNK] if any part is not in the vocabulary. */
    private void wordPiece(String word, List<Integer> ids) {
        int[] cps = word.codePoints().toArray();
        if (cps.length > settings.maxInputCharsPerWord) {
            ids.add(unkId);
            return;
        }
        List<Integer> pieces = new ArrayList<>();
        int start = 0;
        while (start < cps.length) {
            int end = cps.length;
            Integer found = null;
            while (start < end) {
                String sub = new String(cps, start, end - start);
                if (start > 0) sub = settings.continuingSubwordPrefix + sub;
                found = vocab.get(sub);
                if (found != null) break;
                end--;
            }
            if (found == null) {
                ids.add(unkId);
                return;
            }
            pieces.add(found);
            start = end;
        }
        ids.addAll(pieces);
    }

    /**
     * WordPiece ids of a text, without special tokens.
     *
     * @param text any string
     * @return the ids
     */
    public List<Integer> tokenize(String text) {
        List<Integer> ids = new ArrayList<>();
        for (String w : words(normalize(text))) wordPiece(w, ids);
        return ids;
    }

    /**
     * [CLS] text [SEP] truncated to maxLen tokens, as the Python kit encodes a single text.
     *
     * @param text any string (empty and whitespace-only give [CLS] [SEP])
     * @param maxLen the bundle's max_seq_len (at least 3)
     * @return the encoding
     */
    public Encoding encode(String text, int maxLen) {
        return encode(text, null, maxLen);
    }

    /**
     * [CLS] a [SEP] b [SEP] with token types 0/1; longest-first truncation, as HF tokenizers does
     * it: when both sides are too long, the shorter keeps min(its length, budget / 2) and the
     * longer gets the rest (on a tie, the first side is the "shorter"). An empty pair string
     * encodes as a single text, as transformers does.
     *
     * @param a first text
     * @param b second text, or null
     * @param maxLen the bundle's max_seq_len (at least 3)
     * @return the encoding
     * @throws IllegalArgumentException when maxLen is too small for the special tokens
     */
    public Encoding encode(String a, String b, int maxLen) {
        List<Integer> first = tokenize(a);
        boolean pair = b != null && !b.isEmpty();
        List<Integer> second = pair ? tokenize(b) : new ArrayList<>();
        int specials = pair ? 3 : 2;
        int budget = maxLen - specials;
        if (budget < 0) throw new IllegalArgumentException("max length " + maxLen + " leaves no room for the special tokens");
        int n1 = first.size(), n2 = second.size();
        if (n1 + n2 > budget) {
            if (!pair) {
                n1 = budget;
            } else {
                boolean swap = n1 > n2;
                int shorter = Math.min(swap ? n2 : n1, budget / 2);
                int longer = Math.min(budget - shorter, swap ? n1 : n2);
                n1 = swap ? longer : shorter;
                n2 = swap ? shorter : longer;
            }
        }
        int total = n1 + n2 + specials;
        int[] ids = new int[total], types = new int[total];
        int k = 0;
        ids[k++] = clsId;
        for (int i = 0; i < n1; i++) ids[k++] = first.get(i);
        ids[k++] = sepId;
        if (pair) {
            for (int i = 0; i < n2; i++) {
                types[k] = 1;
                ids[k++] = second.get(i);
            }
            types[k] = 1;
            ids[k++] = sepId;
        }
        return new Encoding(ids, types);
    }
}
