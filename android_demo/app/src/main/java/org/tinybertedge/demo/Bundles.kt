package org.tinybertedge.demo

import android.content.Context
import android.os.Build
import java.io.File
import java.io.InputStream
import java.security.MessageDigest
import org.tinybertedge.core.BundleException
import org.tinybertedge.core.BundleManifest
import org.tinybertedge.core.InferenceEngine
import org.tinybertedge.engine.executorch.ExecuTorchEngine
import org.tinybertedge.engine.litert.LiteRTEngine
import org.tinybertedge.engine.mediapipe.MediaPipeEngine

/** Where the app looks for bundles, and which engine runs which bundle. */
object Bundles {
    /** `adb push BUNDLE /data/local/tmp/tinybert-edge/` puts bundles here (as ExecuTorch's demos do). */
    const val PUSHED_DIR = "/data/local/tmp/tinybert-edge"
    private const val ASSET_DIR = "bundles"
    private const val COPIED_MARKER = ".copied"

    /** The engines, by the names the screen and the benchmark mode's `engine` extra use. */
    val ENGINES = listOf("executorch", "litert", "mediapipe")

    /** The engine a bundle runs on unless another is asked for: its format's own runtime. */
    fun defaultEngine(format: String): String = when (format) {
        "executorch" -> "executorch"
        "tflite" -> "litert"
        "mediapipe" -> "mediapipe"
        else -> throw BundleException(BundleException.Reason.BAD_METADATA, "unknown bundle format $format")
    }

    fun factory(context: Context, engine: String): InferenceEngine.Factory = when (engine) {
        "executorch" -> ExecuTorchEngine.FACTORY
        "litert" -> LiteRTEngine.FACTORY
        "mediapipe" -> MediaPipeEngine.factory(context)
        else -> throw BundleException(BundleException.Reason.BAD_METADATA, "unknown engine $engine (executorch, litert or mediapipe)")
    }

    /** Whether an engine can run a bundle: .pte on ExecuTorch, any .tflite on LiteRT, MediaPipe-ready .tflite on MediaPipe. */
    fun runs(engine: String, bundle: BundleManifest): Boolean = when (engine) {
        "executorch" -> bundle.format == "executorch"
        "litert" -> bundle.format == "tflite" || bundle.format == "mediapipe"
        "mediapipe" -> bundle.mediapipeLoadable
        else -> false
    }

    /**
     * Bundle directories, pushed ones first, then those shipped in assets/bundles/ (copied to the
     * app's files: the runtimes memory-map a real file, not an asset stream).
     */
    fun candidates(context: Context): List<File> {
        val pushed = File(PUSHED_DIR).listFiles { f -> File(f, "metadata.json").isFile }?.sortedBy { it.name } ?: emptyList()
        val own = File(context.getExternalFilesDir(null), "bundles").listFiles { f -> File(f, "metadata.json").isFile }
            ?.sortedBy { it.name } ?: emptyList()
        return pushed + own + copyAssets(context)
    }

    /** The first bundle the engine runs that loads and verifies; errors of the others are kept. */
    fun firstFor(context: Context, engine: String): Pair<BundleManifest?, List<String>> {
        val errors = mutableListOf<String>()
        for (dir in candidates(context)) {
            try {
                val m = BundleManifest.load(dir)
                if (runs(engine, m)) return m to errors
            } catch (e: BundleException) {
                errors += "${dir.name}: ${e.message}"
            }
        }
        return null to errors
    }

    /**
     * Copies each assets/bundles/NAME/ to files/bundles/NAME/. The marker file holds the sha256 of
     * the asset's metadata.json (which itself holds the sha256 of every other file), so a new APK
     * with an updated bundle of the same name is copied again instead of the stale copy being kept.
     * The marker is written last: a copy cut short is redone on the next start.
     */
    private fun copyAssets(context: Context): List<File> {
        val names = context.assets.list(ASSET_DIR) ?: return emptyList()
        val out = mutableListOf<File>()
        for (name in names.sorted()) {
            val files = context.assets.list("$ASSET_DIR/$name") ?: continue
            if ("metadata.json" !in files) continue
            val dest = File(context.filesDir, "$ASSET_DIR/$name")
            val marker = File(dest, COPIED_MARKER)
            val key = context.assets.open("$ASSET_DIR/$name/metadata.json").use { sha256(it) }
            if (!marker.isFile || marker.readText().trim() != key) {
                dest.deleteRecursively()  // files of the previous version that the new one no longer has go too
                dest.mkdirs()
                for (f in files) {
                    val tmp = File(dest, "$f.tmp")
                    context.assets.open("$ASSET_DIR/$name/$f").use { input -> tmp.outputStream().use { input.copyTo(it) } }
                    tmp.renameTo(File(dest, f))
                }
                marker.writeText(key)
            }
            out += dest
        }
        return out
    }

    private fun sha256(input: InputStream): String {
        val md = MessageDigest.getInstance("SHA-256")
        val buf = ByteArray(1 shl 16)
        while (true) {
            val n = input.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
        return md.digest().joinToString("") { "%02x".format(it) }
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
            "litert" to BuildConfig.LITERT_VERSION,
            "mediapipe-tasks-text" to BuildConfig.MEDIAPIPE_TASKS_VERSION
        )
    )
}
