package org.tinybertedge.core;

/** input_ids, attention_mask and token_type_ids of shape (1, length); engines convert to their dtype. */
public final class PaddedInput {
    public final int[] inputIds, attentionMask, tokenTypeIds;
    /** Tokens before padding. */
    public final int realTokens;

    public PaddedInput(int[] inputIds, int[] attentionMask, int[] tokenTypeIds, int realTokens) {
        this.inputIds = inputIds;
        this.attentionMask = attentionMask;
        this.tokenTypeIds = tokenTypeIds;
        this.realTokens = realTokens;
    }

    public int length() {
        return inputIds.length;
    }

    /** As int64, for ExecuTorch (.pte inputs are int64 per metadata.json). */
    public static long[] asLong(int[] a) {
        long[] out = new long[a.length];
        for (int k = 0; k < a.length; k++) out[k] = a[k];
        return out;
    }
}
