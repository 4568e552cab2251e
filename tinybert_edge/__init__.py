"""tinybert-edge: TinyBERT distillation of BERT teachers into small students for on-device text classification."""

__version__ = "0.1.0"
