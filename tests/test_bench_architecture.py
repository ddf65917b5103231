"""The architecture comparison trains each candidate as a user would and
ranks them by validation loss after the same minutes."""

from benchmarks import bench_architecture as bench


def test_each_candidate_is_the_recipe_with_its_settings_as_training_flags():
    settings = bench.Settings(recipe="en-fr", minutes=15.0)
    command = bench.train_command(settings, "runs/x", {"num_layers": 4})
    assert command[1:7] == [
        "-m",
        "training.train",
        "--recipe",
        "en-fr",
        "--out",
        "runs/x",
    ]
    assert "--resume" in command  # The folder already holds the tokenizer.
    assert command[command.index("--time-budget-minutes") + 1] == "15.0"
    assert command[-2:] == ["--num-layers", "4"]
    assert "--data-dir" not in command


def test_each_default_candidate_sets_the_whole_shape_its_name_says():
    # Whatever the recipe's own shape, a candidate trains the one it names.
    for name, shape in bench.CANDIDATES.items():
        layers, width = shape["num_layers"], shape["hidden_dim"]
        assert name == f"{layers}+{layers} d{width}"
        assert set(shape) == {
            "num_layers",
            "hidden_dim",
            "num_heads",
            "intermediate_dim",
        }
    assert bench.flags(bench.CANDIDATES["3+3 d384"]) == [
        "--num-layers",
        "3",
        "--hidden-dim",
        "384",
        "--num-heads",
        "6",
        "--intermediate-dim",
        "1536",
    ]


def test_the_lowest_validation_loss_after_the_same_minutes_is_best():
    def done(loss, steps):
        return dict(
            parameters=1000, steps=steps, seconds_per_update=1.0, valid_loss=loss
        )

    backends = {
        "tensorflow": {
            "candidates": {
                "small": done(3.1, 900),
                "large": done(2.9, 500),
                "broken": {"error": "training exited with code 1"},
            }
        }
    }
    table, text, summary = bench.report(backends, bench.Settings(minutes=15.0))
    assert summary["tensorflow"]["best"] == "large"
    assert summary["tensorflow"]["valid_loss"] == {"small": 3.1, "large": 2.9}
    assert "training exited with code 1" in table
    assert "validation loss after 15 min" in table
    assert "lowest validation loss: tensorflow: large" in text
