package org.tinybertedge.demo

import android.app.Activity
import android.os.Bundle
import android.os.Debug
import android.util.Log
import android.widget.TextView
import java.io.File
import java.util.function.DoubleSupplier
import org.tinybertedge.core.BenchmarkRunner
import org.tinybertedge.core.BundleException
import org.tinybertedge.core.BundleManifest
import org.tinybertedge.core.Json

/**
 * Benchmark mode, driven by intent extras (what `tinybert-edge bench --device adb` sends):
 *   model       bundle directory on the phone (required)
 *   threads     runtime threads (default 1)
 *   iterations  timed runs (default 100)
 *   warmup      untimed runs first (default 10)
 *   workload    fixed (padded to max_seq_len) or real (eval texts at their lengths; default fixed)
 *   data        eval file, label<TAB>text per line (optional: accuracy and real lengths)
 *   engine      executorch, litert or mediapipe (default: the bundle format's own runtime:
 *               .pte -> executorch, tflite -> litert, mediapipe -> mediapipe)
 *   out         results file; must be inside this app's external files directory
 * It writes the core's results document (schema tinybert-edge/bench-device v1, with the bundle's
 * on-device self-test in "self_test") atomically, also when the run fails (status "failed" with the
 * reason; a failed self-test is one), then finishes.
 */
class BenchmarkActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val status = TextView(this)
        status.fitsSystemWindows = true  // targetSdk 35 draws edge to edge: keep the line out of the status bar
        setContentView(status)
        val model = intent.getStringExtra("model")
        val threads = intent.getIntExtra("threads", 1)
        val iterations = intent.getIntExtra("iterations", 100)
        val warmup = intent.getIntExtra("warmup", 10)
        val workload = intent.getStringExtra("workload") ?: "fixed"
        val data = intent.getStringExtra("data")
        val engine = intent.getStringExtra("engine")
        val filesDir = getExternalFilesDir(null)!!.canonicalFile
        val out = File(intent.getStringExtra("out") ?: File(filesDir, "bench.json").path).canonicalFile
        if (!out.path.startsWith(filesDir.path + File.separator)) {
            status.text = "out must be inside $filesDir"
            Log.e(TAG, "refusing to write $out: outside $filesDir")
            finish()
            return
        }
        status.text = getString(R.string.benchmark_running, model, engine ?: "its format's engine", threads, iterations)
        Thread {
            val doc = run(model, engine, threads, iterations, warmup, workload, data)
            val tmp = File(out.path + ".tmp")
            tmp.writeText(Json.write(doc))
            if (!tmp.renameTo(out)) Log.e(TAG, "could not move $tmp to $out")
            Log.i(TAG, "results: $out")
            runOnUiThread { finish() }
        }.start()
    }

    private fun run(model: String?, engineExtra: String?, threads: Int, iterations: Int, warmup: Int, workload: String, data: String?): Map<String, Any?> {
        val settings = BenchmarkRunner.Settings(threads, iterations, warmup, workload, 0)
        val bundle = try {
            if (model == null) throw BundleException(BundleException.Reason.MISSING_FILE, "no model extra; pass --es model /data/local/tmp/tinybert-edge/BUNDLE")
            BundleManifest.load(File(model))
        } catch (e: BundleException) {
            return failed(e.message ?: e.toString(), settings)
        }
        val engine = engineExtra ?: Bundles.defaultEngine(bundle.format)
        if (engine !in Bundles.ENGINES || !Bundles.runs(engine, bundle)) {
            return failed("engine $engine cannot run ${bundle.dir.name} (a ${bundle.format} bundle); engines: ${Bundles.ENGINES}", settings)
        }
        val examples = try {
            data?.let { BenchmarkRunner.Example.parseTsv(File(it).readText()) }
        } catch (e: Exception) {
            return failed("cannot read eval file $data: ${e.message}", settings)
        }
        val pss = PssSampler().also { it.start() }
        try {
            return BenchmarkRunner.run(bundle, Bundles.factory(this, engine), settings, examples, Bundles.deviceInfo(),
                DoubleSupplier { pss.peakMb })
        } finally {
            pss.stop()
        }
    }

    /** A results document for a run that could not start (no bundle to describe). */
    private fun failed(reason: String, s: BenchmarkRunner.Settings): Map<String, Any?> = linkedMapOf(
        "schema" to BenchmarkRunner.SCHEMA,
        "schema_version" to BenchmarkRunner.SCHEMA_VERSION,
        "date" to java.time.Instant.now().toString(),
        "device" to Bundles.deviceInfo(),
        "bundle" to linkedMapOf("name" to "", "format" to "", "quantization" to "", "artifact_sha256" to "",
            "size_bytes" to 0, "seq_len_policy" to linkedMapOf<String, Any>()),
        "settings" to linkedMapOf("threads" to s.threads, "iterations" to s.iterations, "warmup" to s.warmup,
            "workload" to s.workload),
        "result" to linkedMapOf("status" to "failed", "reason" to reason)
    )

    /** Peak PSS of this process, sampled every 50 ms while the benchmark runs (Debug.getPss is in kB). */
    private class PssSampler {
        @Volatile var peakMb = 0.0
        @Volatile private var running = true
        private val thread = Thread {
            while (running) {
                peakMb = maxOf(peakMb, Debug.getPss() / 1024.0)
                Thread.sleep(50)
            }
        }

        fun start() = thread.start()
        fun stop() {
            running = false
            thread.join()
            peakMb = maxOf(peakMb, Debug.getPss() / 1024.0)
        }
    }

    companion object {
        private const val TAG = "TinyBertEdgeBench"
    }
}
