"""benchmarks/bench_app.py: what it reads from the server's log."""

from benchmarks import bench_app

LOG = (
    "app: startup: imports 6.91 s (Keras 3.40 s, Gradio 3.51 s), page built 0.52 s "
    "(4 model(s) found, en-es first)\n"
    "app: warm-up: first answer ready on en-es: loaded in 0.74 s, compiled in "
    "3.61 s (11.20 s after start)\n"
    "app: warm-up: en-es loaded in 0.00 s, compiled in 15.50 s (26.70 s after start)\n"
    "app: warm-up: en-fr loaded in 0.71 s, compiled in 14.90 s (42.31 s after start)\n"
)


def test_the_default_models_load_time_is_that_of_the_first_answer():
    # Its warm-up line comes after the first answer has loaded it: 0.00 s.
    phases = bench_app.startup_phases(LOG)
    assert phases["imports_seconds"] == 6.91 and phases["build_seconds"] == 0.52
    assert phases["keras_import_seconds"] == 3.4
    assert phases["gradio_import_seconds"] == 3.51
    assert phases["first_answer_ready_seconds"] == 11.2
    assert phases["first_answer_load_seconds"] == 0.74
    assert phases["first_answer_compile_seconds"] == 3.61
    assert phases["models"]["en-es"]["load_seconds"] == 0.0
    assert phases["models"]["en-fr"] == {
        "load_seconds": 0.71,
        "compile_seconds": 14.9,
        "ready_after_start_seconds": 42.31,
    }
    rows = {
        path: label for label, path, *_ in bench_app.metrics(bench_app.FULL, "en-es")
    }
    assert rows["first_start.first_answer_load_seconds"] == (
        "first start: default model loaded, s"
    )
