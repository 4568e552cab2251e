package org.tinybertedge.core;

/** Token ids and token type ids of one input, unpadded: [CLS] a [SEP] (b [SEP]). */
public final class Encoding {
    public final int[] inputIds, tokenTypeIds;

    public Encoding(int[] inputIds, int[] tokenTypeIds) {
        this.inputIds = inputIds;
        this.tokenTypeIds = tokenTypeIds;
    }

    public int length() {
        return inputIds.length;
    }

    /**
     * The model's three inputs at a given length: ids and type ids padded, mask 1 on real tokens.
     *
     * @param length padded length (from the bundle's SeqLenPolicy), at least length()
     * @param padId the tokenizer's [PAD] id
     * @return the padded input
     * @throws IllegalArgumentException when length is shorter than the encoding
     */
    public PaddedInput pad(int length, int padId) {
        if (length < inputIds.length) throw new IllegalArgumentException("cannot pad " + inputIds.length + " tokens to " + length);
        int[] ids = new int[length], mask = new int[length], types = new int[length];
        java.util.Arrays.fill(ids, padId);
        System.arraycopy(inputIds, 0, ids, 0, inputIds.length);
        System.arraycopy(tokenTypeIds, 0, types, 0, tokenTypeIds.length);
        java.util.Arrays.fill(mask, 0, inputIds.length, 1);
        return new PaddedInput(ids, mask, types, inputIds.length);
    }
}
