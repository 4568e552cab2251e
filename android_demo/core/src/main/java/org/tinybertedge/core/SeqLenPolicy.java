package org.tinybertedge.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** How long an input is made before it runs: fixed, dynamic or buckets (metadata.json "seq_len_policy"). */
public final class SeqLenPolicy {
    public final String kind;
    public final int maxLen;
    public final int[] buckets;

    public SeqLenPolicy(String kind, int maxLen, int[] buckets) {
        this.kind = kind;
        this.maxLen = maxLen;
        this.buckets = buckets;
    }

    /**
     * Same rule as the Python kit's SeqLenPolicy.pad_length.
     *
     * @param tokens tokens of the (already truncated) input
     * @return the padded length
     */
    public int padLength(int tokens) {
        if (kind.equals("fixed")) return maxLen;
        if (kind.equals("dynamic")) return Math.max(tokens, 2);  // the exported dynamic dimension starts at 2
        for (int b : buckets) if (b >= tokens) return b;
        return maxLen;
    }

    static SeqLenPolicy fromMetadata(Map<String, Object> p, int maxSeqLen) throws BundleException {
        String where = "metadata.json \"seq_len_policy\"";
        String kind = Json.str(p, "kind", where);
        if (!kind.equals("fixed") && !kind.equals("dynamic") && !kind.equals("buckets")) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": unknown kind " + kind + " (fixed, dynamic or buckets)");
        }
        List<Object> raw = Json.list(p, "buckets", where);
        int[] b = new int[raw.size()];
        List<Integer> check = new ArrayList<>();
        for (int k = 0; k < b.length; k++) {
            b[k] = ((Number) raw.get(k)).intValue();
            check.add(b[k]);
        }
        if (kind.equals("buckets") && (b.length == 0 || b[b.length - 1] != maxSeqLen)) {
            throw new BundleException(BundleException.Reason.BAD_METADATA, where + ": buckets " + check + " must end at max_seq_len " + maxSeqLen);
        }
        return new SeqLenPolicy(kind, maxSeqLen, b);
    }
}
