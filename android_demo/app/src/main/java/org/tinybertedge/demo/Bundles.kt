package org.tinybertedge.demo

import android.content.Context
import android.os.Build
import java.io.File
import org.tinybertedge.core.BundleException
import org.tinybertedge.core.BundleManifest
import org.tinybertedge.core.InferenceEngine
import org.tinybertedge.engine.executorch.ExecuTorchEngine
import org.tinybertedge.engine.litert.LiteRTEngine

/** Where the app looks for bundles, and which engine runs which format. */
object Bundles {
    /** `adb push BUNDLE /data/local/tmp/tinybert-edge/` puts bundles here (as ExecuTorch's demos do). */
    const val PUSHED_DIR = "/data/local/tmp/tinybert-edge"
    private const val ASSET_DIR = "bundles"

    fun factory(format: String): InferenceEngine.Factory = when (format) {
        "executorch" -> ExecuTorchEngine.FACTORY
        "tflite" -> LiteRTEngine.FACTORY
        else -> throw BundleException(BundleException.Reason.BAD_METADATA, "unknown bundle format $format")
    }

    /**
     * Bundle directories, pushed ones first, then those shipped in assets/bundles/ (copied once
     * to the app's files: the runtimes memory-map a real file, not an asset stream).
     */
    fun candidates(context: Context): List<File> {
        val pushed = File(PUSHED_DIR).listFiles { f -> File(f, "metadata.json").isFile }?.sortedBy { it.name } ?: emptyList()
        val own = File(context.getExternalFilesDir(null), "bundles").listFiles { f -> File(f, "metadata.json").isFile }
            ?.sortedBy { it.name } ?: emptyList()
        return pushed + own + copyAssets(context)
    }

    /** The first bundle of the wanted format that loads and verifies; errors of the others are kept. */
    fun firstOfFormat(context: Context, format: String): Pair<BundleManifest?, List<String>> {
        val errors = mutableListOf<String>()
        for (dir in candidates(context)) {
            try {
                val m = BundleManifest.load(dir)
                if (m.format == format) return m to errors
            } catch (e: BundleException) {
                errors += "${dir.name}: ${e.message}"
            }
        }
        return null to errors
    }

    private fun copyAssets(context: Context): List<File> {
        val names = context.assets.list(ASSET_DIR) ?: return emptyList()
        val out = mutableListOf<File>()
        for (name in names.sorted()) {
            val files = context.assets.list("$ASSET_DIR/$name") ?: continue
            if ("metadata.json" !in files) continue
            val dest = File(context.filesDir, "$ASSET_DIR/$name")
            val done = File(dest, ".copied")
            if (!done.isFile) {
                dest.mkdirs()
                for (f in files) {
                    val tmp = File(dest, "$f.tmp")
                    context.assets.open("$ASSET_DIR/$name/$f").use { input -> tmp.outputStream().use { input.copyTo(it) } }
                    tmp.renameTo(File(dest, f))
                }
                done.writeText("ok")
            }
            out += dest
        }
        return out
    }

    /** What the benchmark results say about the phone. */
    fun deviceInfo(): Map<String, Any?> = linkedMapOf(
        "manufacturer" to Build.MANUFACTURER,
        "model" to Build.MODEL,
        "soc" to (if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}" else Build.HARDWARE),
        "abi" to Build.SUPPORTED_ABIS.firstOrNull(),
        "android_sdk" to Build.VERSION.SDK_INT,
        "cores" to Runtime.getRuntime().availableProcessors(),
        "versions" to linkedMapOf(
            "app" to BuildConfig.VERSION_NAME,
            "executorch-android" to BuildConfig.EXECUTORCH_VERSION,
            "litert" to BuildConfig.LITERT_VERSION
        )
    )
}
