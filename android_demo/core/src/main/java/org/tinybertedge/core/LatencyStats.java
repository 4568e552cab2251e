package org.tinybertedge.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Per-inference latency statistics with the Python harness's math (benchmarks.worker.latency_stats):
 * percentiles with linear interpolation (numpy's default), population std, and a mean trimmed of
 * the fastest and slowest 10 % (as ExecuTorch's Android benchmark app reports).
 */
public final class LatencyStats {
    public final double p50, p90, p99, mean, std, trimmedMean;
    public final int runs;

    private LatencyStats(double p50, double p90, double p99, double mean, double std, double trimmedMean, int runs) {
        this.p50 = p50;
        this.p90 = p90;
        this.p99 = p99;
        this.mean = mean;
        this.std = std;
        this.trimmedMean = trimmedMean;
        this.runs = runs;
    }

    /**
     * @param ms latencies in milliseconds, at least one
     * @return the statistics
     * @throws IllegalArgumentException when ms is empty
     */
    public static LatencyStats of(double[] ms) {
        if (ms.length == 0) throw new IllegalArgumentException("no latencies to summarize; run at least one iteration");
        double[] a = ms.clone();
        Arrays.sort(a);
        double sum = 0;
        for (double x : a) sum += x;
        double mean = sum / a.length, var = 0;
        for (double x : a) var += (x - mean) * (x - mean);
        int k = (int) (a.length * 0.1);
        double tsum = 0;
        int lo = a.length - 2 * k > 0 ? k : 0, hi = a.length - 2 * k > 0 ? a.length - k : a.length;
        for (int i = lo; i < hi; i++) tsum += a[i];
        return new LatencyStats(percentile(a, 50), percentile(a, 90), percentile(a, 99), mean, Math.sqrt(var / a.length),
                tsum / (hi - lo), a.length);
    }

    /** numpy.percentile(sorted, q) with linear interpolation. */
    static double percentile(double[] sorted, double q) {
        double pos = (sorted.length - 1) * q / 100.0;
        int lo = (int) Math.floor(pos), hi = (int) Math.ceil(pos);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    }

    /** The fields of the benchmark results JSON ("p50_ms" ... "runs"). */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("p50_ms", p50);
        m.put("p90_ms", p90);
        m.put("p99_ms", p99);
        m.put("mean_ms", mean);
        m.put("std_ms", std);
        m.put("trimmed_mean_ms", trimmedMean);
        m.put("runs", runs);
        return m;
    }
}
