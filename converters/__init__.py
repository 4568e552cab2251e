"""On-device converters (ExecuTorch .pte, LiteRT .tflite) and bundles: issue #3.

Depends on the core (`tinybert_edge`), never the reverse. Heavy runtimes are imported lazily
inside each converter.
"""
