package org.tinybertedge.demo

import android.os.Bundle
import android.view.ViewGroup
import android.widget.Button
import android.widget.EditText
import android.widget.LinearLayout
import android.widget.ProgressBar
import android.widget.RadioGroup
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import java.util.concurrent.Executors
import org.tinybertedge.core.Classifier
import org.tinybertedge.core.Prediction
import org.tinybertedge.core.TinyBertEdgeException

/**
 * One screen: pick a backend (ExecuTorch, LiteRT or MediaPipe), type a text, see the label, a
 * confidence bar per label and the latency. Every error (missing or corrupted bundle, runtime
 * failure, outputs of the wrong length) is shown in the error line instead of crashing. The layout
 * pads itself by the system bars (fitsSystemWindows: targetSdk 35 draws edge to edge).
 */
class MainActivity : AppCompatActivity() {
    private val worker = Executors.newSingleThreadExecutor()
    private var classifier: Classifier? = null

    private lateinit var info: TextView
    private lateinit var label: TextView
    private lateinit var bars: LinearLayout
    private lateinit var latency: TextView
    private lateinit var error: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        info = findViewById(R.id.bundle_info)
        label = findViewById(R.id.label)
        bars = findViewById(R.id.bars)
        latency = findViewById(R.id.latency)
        error = findViewById(R.id.error)
        val backend = findViewById<RadioGroup>(R.id.backend)
        backend.setOnCheckedChangeListener { _, id ->
            load(when (id) {
                R.id.backend_litert -> "litert"
                R.id.backend_mediapipe -> "mediapipe"
                else -> "executorch"
            })
        }
        findViewById<Button>(R.id.classify).setOnClickListener {
            classify(findViewById<EditText>(R.id.text).text.toString())
        }
        load("executorch")
    }

    private fun load(engine: String) {
        error.text = ""
        info.text = ""
        worker.execute {
            classifier?.close()
            classifier = null
            try {
                val (bundle, errors) = Bundles.firstFor(this, engine)
                if (bundle == null) {
                    runOnUiThread { error.text = (listOf(getString(R.string.no_bundle)) + errors).joinToString("\n") }
                    return@execute
                }
                val c = Classifier(bundle, Bundles.factory(this, engine).open(bundle, 2))
                classifier = c
                runOnUiThread {
                    info.text = "${bundle.dir.name}: ${bundle.format} ${bundle.quantization} on $engine, ${bundle.artifactBytes() / 1_000_000.0} MB, " +
                        "labels ${bundle.labels.joinToString()}"
                }
            } catch (e: TinyBertEdgeException) {
                runOnUiThread { error.text = e.message }
            } catch (e: RuntimeException) {
                runOnUiThread { error.text = "could not open the bundle: ${e.message}" }
            }
        }
    }

    private fun classify(text: String) {
        worker.execute {
            val c = classifier
            if (c == null) {
                runOnUiThread { error.text = getString(R.string.no_bundle) }
                return@execute
            }
            try {
                val p = c.classify(text, null)
                runOnUiThread { show(c, p) }
            } catch (e: TinyBertEdgeException) {
                runOnUiThread { error.text = e.message }
            }
        }
    }

    private fun show(c: Classifier, p: Prediction) {
        error.text = ""
        label.text = "${p.label}  ${"%.1f".format(100 * p.probabilities[p.labelId])} %"
        bars.removeAllViews()
        for (id in p.ranking) {
            val row = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
            row.addView(TextView(this).apply { text = c.bundle.labels[id]; minWidth = 240 })
            row.addView(ProgressBar(this, null, android.R.attr.progressBarStyleHorizontal).apply {
                max = 1000
                progress = (1000 * p.probabilities[id]).toInt()
                layoutParams = LinearLayout.LayoutParams(0, ViewGroup.LayoutParams.WRAP_CONTENT, 1f)
            })
            row.addView(TextView(this).apply { text = " ${"%.1f".format(100 * p.probabilities[id])} %" })
            bars.addView(row)
        }
        latency.text = "${"%.2f".format(p.latencyMs)} ms for ${p.tokens} tokens (${c.engine().backend()})"
    }

    override fun onDestroy() {
        worker.execute { classifier?.close() }
        worker.shutdown()
        super.onDestroy()
    }
}
