"""The training-loop benchmark reads a recipe's real batches and reports each
backend and pipeline against the fastest one."""

import numpy as np
import pytest

from benchmarks import bench_training_loop as bench
from benchmarks import roofline
from keras_mha import Transformer


def test_a_setting_on_top_of_the_recipe_is_parsed_as_a_number_when_it_is_one():
    assert bench.parse_override("num_layers=4") == ("num_layers", 4)
    assert bench.parse_override("learning-rate=1e-3") == ("learning_rate", 1e-3)
    assert bench.parse_override("input_pipeline=tf") == ("input_pipeline", "tf")


class Batches:
    """A `PyDataset`-like sequence of two batches (no `repeat`)."""

    def __init__(self):
        labels = np.array([[5, 6, 3, 0], [7, 3, 0, 0]], "int32")  # 5 real tokens
        wide = np.array([[5, 6, 7, 8, 9, 3]] * 3, "int32")  # 18 real tokens
        self.items = [
            ({"encoder_inputs": np.ones((2, 4), "int32")}, labels),
            ({"encoder_inputs": np.ones((3, 6), "int32")}, wide),
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_the_average_batch_counts_real_target_tokens_and_padded_matmul_flops():
    model = Transformer(
        source_vocabulary_size=20,
        target_vocabulary_size=20,
        num_encoder_layers=1,
        num_decoder_layers=1,
        hidden_dim=8,
        intermediate_dim=16,
        num_heads=2,
    )
    tokens, flops = bench.average_batch(Batches(), 2, model)
    assert tokens == pytest.approx((5 + 18) / 2)
    expected = roofline.training_step_flops(model, 2, 4, 4)
    expected += roofline.training_step_flops(model, 3, 6, 6)
    assert flops == pytest.approx(expected / 2)


def test_a_sequence_is_fit_for_one_epoch_at_most_and_a_pipeline_is_repeated():
    assert bench.fit_input(Batches(), 5)[1] == 2

    class Pipeline:
        def repeat(self):
            return "repeated"

    assert bench.fit_input(Pipeline(), 5) == ("repeated", 5)


def test_the_report_ranks_every_backend_and_pipeline_against_the_fastest():
    def row(seconds, tokens):
        return dict(
            seconds_per_update=seconds,
            tokens_per_second=tokens,
            gemm_share=0.4,
            matmul_gflop_per_second=200.0,
            bf16_gemm_share=0.1,
            bf16_matmul_gflop_per_second=800.0,
            updates_timed=10,
            updates_left_out_compiling=1,
        )

    backends = {
        "tensorflow": {"pipelines": {"tf": row(1.0, 2000.0)}},
        "jax": {"pipelines": {"numpy": row(2.0, 1000.0), "tf": row(4.0, 500.0)}},
    }
    table, _, summary = bench.report(backends, bench.Settings())
    assert summary["jax"] == {
        "fastest_of_the_run": "tensorflow/tf",
        "numpy over the fastest": 0.5,
        "tf over the fastest": 0.25,
    }
    assert summary["tensorflow"]["tf over the fastest"] == 1.0
    assert table.count("\n") == 4  # Header, rule, three rows.
    assert "10 (1)" in table
    assert "| 0.40 | 200.0 | 0.10 | 800.0 |" in table


def test_an_unknown_pipeline_option_is_refused():
    with pytest.raises(ValueError, match=r"NAME\[\+xla\]\[\+bf16\]"):
        bench.run_pipeline(bench.Settings(), "tf+fp8", data=None)
