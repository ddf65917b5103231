"""Benchmarks of keras_mha; see benchmarks/README.md. Not tests."""
