"""Training code: corpora, tokenizers, the input pipeline and the training loop."""
