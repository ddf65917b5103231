"""Watch a Transformer translate: `python app.py`, then open
http://127.0.0.1:7860.

Offers every folder of `saved_models/` (or `$KERAS_MHA_MODELS_DIR`) that
holds a `model.keras`: their cards are read at once. Keras is imported
first; then one thread loads the default model and compiles what its
Translate button needs for sources of up to 16 pieces while Gradio is
imported and the page that `explorer.build_demo` builds is served (most of
compiling runs outside Python's lock, so the two overlap). Then a
background thread compiles every kind of request for each model, then the
longer sources: once the log says `warm-up finished`, no request compiles
(every program a request can need, `explorer.Service.warm_up`). A request
for a model that is not ready waits for it (it holds the model's lock); the
page says which models are still warming up. On JAX, compiled searches are
kept in a persistent cache (`$KERAS_MHA_JAX_CACHE`, default
`~/.cache/keras-mha/jax`), so that a restart compiles nothing.

The log says where the start-up time went: `startup: imports ... (Keras
..., Gradio ...)`, `warm-up: first answer ready on <model> ...`, then one
`warm-up: <model> loaded in ... compiled in ...` line per model.
"""

import logging
import os
import pathlib
import threading
import time

MODELS_DIR = pathlib.Path(os.environ.get("KERAS_MHA_MODELS_DIR", "saved_models"))
JAX_CACHE = pathlib.Path(
    os.environ.get("KERAS_MHA_JAX_CACHE", "~/.cache/keras-mha/jax")
).expanduser()

logger = logging.getLogger("app")


def warm_first_answer_in_background(translators, first, started):
    from explorer.models import warm_first_answer

    if first is None:
        return
    load_seconds, compile_seconds = warm_first_answer(translators[first])
    logger.info(
        "warm-up: first answer ready on %s: loaded in %.2f s, compiled in "
        "%.2f s (%.2f s after start)",
        first,
        load_seconds,
        compile_seconds,
        time.perf_counter() - started,
    )


def warm_up_in_background(service, names, first_answer, started):
    # After the default model's Translate button (`first_answer`, a thread),
    # every kind of request, model by model.
    first_answer.join()
    for name in names:
        timing = service.warm_up([name], source_lengths=(16,))[name]
        logger.info(
            "warm-up: %s loaded in %.2f s, compiled in %.2f s (%.2f s after start)",
            name,
            timing["load_seconds"],
            timing["compile_seconds"],
            time.perf_counter() - started,
        )
    # Then the longer sources, model by model: after this no request compiles.
    service.warm_up(names, source_lengths=(32, 64))
    logger.info(
        "warm-up finished in the background (%.1f s after start)",
        time.perf_counter() - started,
    )


def log_programs(service, every=10.0):
    """Logs the compiled programs kept per model whenever the count changes
    (`programs: en-es=12, ...`): compilation is bounded per model
    (`explorer.models.MAX_PROGRAMS`), and this shows it."""
    last = None
    while True:
        time.sleep(every)
        counts = service.compiled_programs()
        if counts != last:
            logger.info(
                "programs: %s", ", ".join(f"{n}={c}" for n, c in counts.items())
            )
            last = counts


def main(started=None):
    started = started or time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from keras_mha.backend_config import enable_compilation_cache

    enable_compilation_cache(JAX_CACHE)  # Nothing to do on TensorFlow.
    from explorer.models import default_model, load_models

    keras_imported = time.perf_counter()
    translators, failures = load_models(MODELS_DIR, lazy=True)
    first = default_model(translators)
    # What the first answer needs compiles while Gradio is imported and the
    # page is built (compiling runs mostly outside Python's lock).
    first_answer = threading.Thread(
        target=warm_first_answer_in_background,
        args=(translators, first, started),
        daemon=True,
    )
    first_answer.start()
    from explorer import LAUNCH_OPTIONS, build_demo, read_model_cards

    imported = time.perf_counter()
    demo = build_demo(translators, failures, read_model_cards(MODELS_DIR, translators))
    logger.info(
        "startup: imports %.2f s (Keras %.2f s, Gradio %.2f s), page built %.2f s "
        "(%d model(s) found, %s first)",
        imported - started,
        keras_imported - started,
        imported - keras_imported,
        time.perf_counter() - imported,
        len(translators),
        first,
    )
    # The default model first: a request that comes before its warm-up has
    # finished waits for it (it holds the model's lock).
    order = [first] * bool(first) + [name for name in translators if name != first]
    threading.Thread(
        target=warm_up_in_background,
        args=(demo.service, order, first_answer, started),
        daemon=True,
    ).start()
    threading.Thread(target=log_programs, args=(demo.service,), daemon=True).start()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), **LAUNCH_OPTIONS
    )


if __name__ == "__main__":
    main(time.perf_counter())
