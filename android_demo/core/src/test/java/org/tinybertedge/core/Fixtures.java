package org.tinybertedge.core;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;

/**
 * Where the tests find what the Python kit made in the same CI run (tests/test_android_core.py):
 * -Dtinybert.golden=golden.json (tinybert-edge golden), -Dtinybert.bundle=DIR (the bundle the
 * golden vectors were made from), -Dtinybert.benchOut=FILE (where the benchmark test writes its
 * results JSON for the Python side to validate).
 */
final class Fixtures {
    private Fixtures() {
    }

    static File path(String property) {
        String p = System.getProperty(property);
        if (p == null) throw new IllegalStateException("-D" + property + " is not set; run the core tests through android_demo/core/run_jvm_tests.sh");
        return new File(p);
    }

    private static Map<String, Object> golden;

    @SuppressWarnings("unchecked")
    static synchronized Map<String, Object> golden() throws IOException {
        if (golden == null) {
            golden = (Map<String, Object>) Json.parse(new String(Files.readAllBytes(path("tinybert.golden").toPath()), StandardCharsets.UTF_8));
        }
        return golden;
    }

    static int[] ints(Object list) {
        List<?> l = (List<?>) list;
        int[] a = new int[l.size()];
        for (int i = 0; i < a.length; i++) a[i] = ((Number) l.get(i)).intValue();
        return a;
    }

    static double[] doubles(Object list) {
        List<?> l = (List<?>) list;
        double[] a = new double[l.size()];
        for (int i = 0; i < a.length; i++) a[i] = ((Number) l.get(i)).doubleValue();
        return a;
    }

    /** A copy of the test bundle that a test may break. */
    static File copyBundle(File to) throws IOException {
        File src = path("tinybert.bundle");
        to.mkdirs();
        for (File f : src.listFiles()) Files.copy(f.toPath(), new File(to, f.getName()).toPath());
        return to;
    }
}
