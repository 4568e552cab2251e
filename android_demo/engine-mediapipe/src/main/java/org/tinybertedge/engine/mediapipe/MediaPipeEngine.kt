package org.tinybertedge.engine.mediapipe

import android.content.Context
import com.google.mediapipe.framework.MediaPipeException
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.text.textclassifier.TextClassifier
import java.io.FileInputStream
import java.io.IOException
import java.nio.channels.FileChannel
import org.tinybertedge.core.BundleException
import org.tinybertedge.core.BundleManifest
import org.tinybertedge.core.InferenceEngine
import org.tinybertedge.core.InferenceException
import org.tinybertedge.core.PaddedInput

/**
 * Runs a "mediapipe" bundle (a single-signature .tflite with softmax inside and TFLite Model
 * Metadata: BERT tokenizer, vocab.txt, labels.txt) with MediaPipe Tasks' TextClassifier.
 *
 * Unlike the ExecuTorch and LiteRT engines it takes raw text: MediaPipe tokenizes inside its graph
 * with its own C++ WordPiece ([takesText] is true, [classifyText] does the work, [run] refuses
 * ids). Benchmarks therefore time text in -> scores out, tokenization included; and MediaPipe's
 * tokenizer is not BERT's on every input (non-ASCII text, see benchmarks/mediapipe_check.py).
 * The task has no thread setting: `threads` is recorded in the results, MediaPipe picks its own.
 */
class MediaPipeEngine private constructor(
    private val classifier: TextClassifier,
    private val bundle: BundleManifest
) : InferenceEngine {

    override fun backend(): String = "mediapipe"

    override fun takesText(): Boolean = true

    override fun run(input: PaddedInput): FloatArray =
        throw InferenceException("MediaPipe's TextClassifier tokenizes inside its graph and takes text, not token ids; call classifyText")

    /** The model's probabilities in label order (MediaPipe returns categories by score; they are put back by index). */
    override fun classifyText(text: String): FloatArray {
        val result = try {
            classifier.classify(text)
        } catch (e: MediaPipeException) {
            throw InferenceException("MediaPipe failed to classify with ${bundle.artifact.name}: ${e.message}", e)
        } catch (e: RuntimeException) {
            throw InferenceException("MediaPipe failed to classify with ${bundle.artifact.name}: ${e.message}", e)
        }
        val heads = result.classificationResult().classifications()
        if (heads.isEmpty()) throw InferenceException("MediaPipe returned no classification head for ${bundle.artifact.name}; export the bundle again")
        val n = bundle.labels.size
        val scores = FloatArray(n) { Float.NaN }
        for (c in heads[0].categories()) {
            val i = c.index()
            if (i < 0 || i >= n) {
                throw InferenceException("MediaPipe returned category $i (${c.categoryName()}) for $n labels; the .tflite's metadata does not belong to this bundle's labels.txt")
            }
            if (c.categoryName().isNotEmpty() && c.categoryName() != bundle.labels[i]) {
                throw InferenceException("MediaPipe names category $i ${c.categoryName()}, labels.txt says ${bundle.labels[i]}; export the bundle again")
            }
            scores[i] = c.score()
        }
        if (scores.any { it.isNaN() }) {
            throw InferenceException("MediaPipe returned scores for ${scores.count { !it.isNaN() }} of $n labels (a max_results or score threshold in the model's metadata?); export the bundle again")
        }
        return scores
    }

    override fun close() {
        classifier.close()
    }

    companion object {
        /**
         * Opens the bundle's .tflite with MediaPipe's TextClassifier from a memory-mapped buffer
         * (BaseOptions.setModelAssetBuffer: a pushed bundle is a file, not an APK asset).
         */
        @JvmStatic
        fun open(context: Context, bundle: BundleManifest, threads: Int): MediaPipeEngine {
            bundle.requireAnyFormat(listOf("mediapipe", "tflite"), "int32")
            if (!bundle.mediapipeLoadable) {
                throw BundleException(BundleException.Reason.BAD_METADATA, "${bundle.dir.name} cannot be loaded by MediaPipe's TextClassifier " +
                    "(several signatures, or no TFLite Model Metadata); export it with --format mediapipe, or pick the LiteRT backend")
            }
            val model = try {
                FileInputStream(bundle.artifact).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }
            } catch (e: IOException) {
                throw InferenceException("cannot read ${bundle.artifact}: ${e.message}; push the bundle again", e)
            }
            val options = TextClassifier.TextClassifierOptions.builder()
                .setBaseOptions(BaseOptions.builder().setModelAssetBuffer(model).build())
                .build()
            val classifier = try {
                TextClassifier.createFromOptions(context, options)
            } catch (e: MediaPipeException) {
                throw InferenceException("MediaPipe cannot load ${bundle.artifact.name} as a text classifier: ${e.message}", e)
            } catch (e: IllegalArgumentException) {
                throw InferenceException("MediaPipe cannot load ${bundle.artifact.name} as a text classifier: ${e.message}", e)
            }
            return MediaPipeEngine(classifier, bundle)
        }

        /** MediaPipe tasks need an Android Context, so its factory is made per context. */
        @JvmStatic
        fun factory(context: Context): InferenceEngine.Factory =
            InferenceEngine.Factory { bundle, threads -> open(context.applicationContext, bundle, threads) }
    }
}
