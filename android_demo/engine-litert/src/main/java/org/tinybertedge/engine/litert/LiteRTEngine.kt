package org.tinybertedge.engine.litert

import org.tensorflow.lite.Interpreter
import org.tinybertedge.core.BundleException
import org.tinybertedge.core.BundleManifest
import org.tinybertedge.core.InferenceEngine
import org.tinybertedge.core.InferenceException
import org.tinybertedge.core.PaddedInput

/**
 * Runs a .tflite bundle ("tflite" or "mediapipe" format) with LiteRT's Interpreter and the
 * XNNPACK delegate.
 *
 * Inputs are int32 (1, L) arrays fed by signature ("serving_default" for fixed bundles,
 * "seq<L>" per bucket); litert-torch names them args_0, args_1, args_2 in positional order
 * (input_ids, attention_mask, token_type_ids), as the Python runner relies on too. Outputs are
 * probabilities (softmax inside the graph, metadata.json outputs[0].kind), which the core passes
 * through.
 */
class LiteRTEngine private constructor(
    private val interpreter: Interpreter,
    private val bundle: BundleManifest
) : InferenceEngine {

    override fun backend(): String = "tflite"

    override fun run(input: PaddedInput): FloatArray {
        val length = input.length()
        val key = bundle.signatures[length]
            ?: throw InferenceException("${bundle.dir.name} has no signature for length $length (signatures ${bundle.signatures}); pad with the bundle's policy")
        try {
            val names = interpreter.getSignatureInputs(key).sorted()
            val values = arrayOf(input.inputIds, input.attentionMask, input.tokenTypeIds)
            val inputs = HashMap<String, Any>()
            names.forEachIndexed { i, name -> inputs[name] = arrayOf(values[i]) }
            val outName = interpreter.getSignatureOutputs(key)[0]
            val outShape = interpreter.getOutputTensorFromSignature(outName, key).shape()
            val scores = Array(outShape[0]) { FloatArray(outShape[outShape.size - 1]) }
            interpreter.runSignature(inputs, mapOf<String, Any>(outName to scores), key)
            return scores[0]
        } catch (e: IllegalArgumentException) {  // wrong input names, shapes or types
            throw InferenceException("LiteRT refused the inputs of signature $key of ${bundle.artifact.name}: ${e.message}", e)
        } catch (e: IllegalStateException) {  // tensor allocation or invoke failed inside the runtime
            throw InferenceException("LiteRT failed to run signature $key of ${bundle.artifact.name}: ${e.message}", e)
        }
    }

    override fun close() {
        interpreter.close()
    }

    companion object {
        /** Opens the bundle's .tflite with XNNPACK and `threads` threads and checks its signatures. */
        @JvmStatic
        fun open(bundle: BundleManifest, threads: Int): LiteRTEngine {
            bundle.requireAnyFormat(listOf("tflite", "mediapipe"), "int32")
            val options = Interpreter.Options().setNumThreads(threads).setUseXNNPACK(true)
            val interpreter = try {
                Interpreter(bundle.artifact, options)
            } catch (e: IllegalArgumentException) {  // not a flatbuffer, unreadable file
                throw InferenceException("LiteRT cannot load ${bundle.artifact}: ${e.message}; push the bundle again", e)
            } catch (e: IllegalStateException) {  // delegate or tensor allocation failed
                throw InferenceException("LiteRT cannot prepare ${bundle.artifact} (XNNPACK, $threads threads): ${e.message}", e)
            }
            val keys = interpreter.signatureKeys.toSet()
            if (!keys.containsAll(bundle.signatures.values)) {
                interpreter.close()
                throw BundleException(BundleException.Reason.BAD_METADATA, "${bundle.artifact.name} has signatures $keys, metadata.json expects ${bundle.signatures.values}; export the bundle again")
            }
            return LiteRTEngine(interpreter, bundle)
        }

        @JvmField
        val FACTORY = InferenceEngine.Factory { bundle, threads -> open(bundle, threads) }
    }
}
