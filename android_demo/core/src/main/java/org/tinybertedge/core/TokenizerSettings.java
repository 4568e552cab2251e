package org.tinybertedge.core;

import java.util.Map;

/** The "tokenizer" object of metadata.json: how the bundle's model tokenizes text. */
public final class TokenizerSettings {
    public final boolean doLowerCase, stripAccents, tokenizeChineseChars, cleanText;
    public final String continuingSubwordPrefix, clsToken, sepToken, padToken, unkToken;
    public final int maxInputCharsPerWord, padId;

    TokenizerSettings(boolean doLowerCase, Boolean stripAccents, boolean tokenizeChineseChars, boolean cleanText,
                      String prefix, int maxChars, String cls, String sep, String pad, String unk, int padId) {
        this.doLowerCase = doLowerCase;
        this.stripAccents = stripAccents == null ? doLowerCase : stripAccents;  // null follows do_lower_case, as in BERT
        this.tokenizeChineseChars = tokenizeChineseChars;
        this.cleanText = cleanText;
        this.continuingSubwordPrefix = prefix;
        this.maxInputCharsPerWord = maxChars;
        this.clsToken = cls;
        this.sepToken = sep;
        this.padToken = pad;
        this.unkToken = unk;
        this.padId = padId;
    }

    /**
     * Reads the settings from metadata.json's "tokenizer" object.
     *
     * @param t the parsed object
     * @return the settings
     * @throws BundleException when a key is missing or of the wrong type, or the type is not BERT WordPiece
     */
    public static TokenizerSettings fromMetadata(Map<String, Object> t) throws BundleException {
        String where = "metadata.json \"tokenizer\"";
        String type = Json.str(t, "type", where);
        if (!type.equals("bert-wordpiece")) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": type " + type + " is not supported; the app reads bert-wordpiece bundles");
        }
        Object strip = Json.get(t, "strip_accents", where);
        return new TokenizerSettings(Boolean.TRUE.equals(Json.get(t, "do_lower_case", where)),
                strip == null ? null : (Boolean) strip, Boolean.TRUE.equals(Json.get(t, "tokenize_chinese_chars", where)),
                Boolean.TRUE.equals(Json.get(t, "clean_text", where)), Json.str(t, "continuing_subword_prefix", where),
                (int) Json.num(t, "max_input_chars_per_word", where), Json.str(t, "cls_token", where),
                Json.str(t, "sep_token", where), Json.str(t, "pad_token", where), Json.str(t, "unk_token", where),
                (int) Json.num(t, "pad_id", where));
    }
}
