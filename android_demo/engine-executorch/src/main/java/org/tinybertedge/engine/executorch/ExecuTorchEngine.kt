package org.tinybertedge.engine.executorch

import org.pytorch.executorch.EValue
import org.pytorch.executorch.ExecutorchRuntimeException
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tinybertedge.core.BundleException
import org.tinybertedge.core.BundleManifest
import org.tinybertedge.core.InferenceEngine
import org.tinybertedge.core.InferenceException
import org.tinybertedge.core.PaddedInput

/**
 * Runs a .pte bundle with ExecuTorch's Android runtime (XNNPACK-delegated program).
 *
 * Inputs are int64 (1, L) tensors input_ids, attention_mask, token_type_ids, as metadata.json
 * says; the method is "forward" for fixed and dynamic bundles and "seq<L>" per bucket. Outputs are
 * logits (metadata.json outputs[0].kind), so the core applies the softmax.
 */
class ExecuTorchEngine private constructor(
    private val module: Module,
    private val bundle: BundleManifest
) : InferenceEngine {

    override fun backend(): String = "executorch"

    override fun run(input: PaddedInput): FloatArray {
        val length = input.length()
        val method = if (bundle.policy.kind == "dynamic") "forward" else bundle.signatures[length]
            ?: throw InferenceException("${bundle.dir.name} has no method for length $length (methods ${bundle.signatures}); pad with the bundle's policy")
        val shape = longArrayOf(1, length.toLong())
        val inputs = arrayOf(input.inputIds, input.attentionMask, input.tokenTypeIds)
            .map { EValue.from(Tensor.fromBlob(PaddedInput.asLong(it), shape)) }
        try {
            val out = module.execute(method, *inputs.toTypedArray())
            return out[0].toTensor().dataAsFloatArray
        } catch (e: RuntimeException) {  // ExecutorchRuntimeException included
            throw InferenceException("ExecuTorch failed to run $method of ${bundle.artifact.name}: ${e.message}", e)
        }
    }

    override fun close() {
        module.destroy()
    }

    companion object {
        /**
         * Opens the bundle's .pte (memory-mapped) with `threads` threads, checks its methods and
         * loads every one of them (Module.loadMethod: program parsing, memory planning, XNNPACK
         * delegate setup), so that none of that lands in the first timed inference.
         */
        @JvmStatic
        fun open(bundle: BundleManifest, threads: Int): ExecuTorchEngine {
            bundle.requireFormat("executorch", "int64")
            val module = try {
                Module.load(bundle.artifact.absolutePath, Module.LOAD_MODE_MMAP, threads)
            } catch (e: RuntimeException) {
                throw InferenceException("ExecuTorch cannot load ${bundle.artifact}: ${e.message}; push the bundle again", e)
            }
            val methods = module.getMethods().toSet()  // a function in the Kotlin API, a getter in the Java one
            val wanted = if (bundle.policy.kind == "dynamic") setOf("forward") else bundle.signatures.values.toSet()
            if (!methods.containsAll(wanted)) {
                module.destroy()
                throw BundleException(BundleException.Reason.BAD_METADATA, "${bundle.artifact.name} has methods $methods, metadata.json expects $wanted; export the bundle again")
            }
            for (name in wanted.sorted()) {
                try {
                    module.loadMethod(name)  // executorch-android 1.4+: returns nothing, throws on failure
                } catch (e: ExecutorchRuntimeException) {
                    module.destroy()
                    throw InferenceException("ExecuTorch cannot load method $name of ${bundle.artifact.name} (error ${e.errorCode}): ${e.message}; " +
                        "export the bundle again with the executorch version of this app (see android_demo/README.md)", e)
                }
            }
            return ExecuTorchEngine(module, bundle)
        }

        @JvmField
        val FACTORY = InferenceEngine.Factory { bundle, threads -> open(bundle, threads) }
    }
}
