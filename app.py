"""Watch a Transformer translate: `python app.py`, then open
http://127.0.0.1:7860.

Loads every folder of `saved_models/` (or `$KERAS_MHA_MODELS_DIR`) that holds
a `model.keras`, compiles the default model's searches for the common shapes
so that the first visitor waits no longer than the next, launches the page
that `explorer.build_demo` builds, and compiles the rest (the other models,
longer sources) in the background. On JAX, compiled searches are kept in a
persistent cache (`$KERAS_MHA_JAX_CACHE`, default `~/.cache/keras-mha/jax`),
so that a restart compiles nothing.
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


def enable_compilation_cache():
    """JAX keeps every compiled search on disk (no other backend has one)."""
    import keras

    if keras.backend.backend() != "jax":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def warm_up_in_background(service, names):
    start = time.perf_counter()
    service.warm_up(names)
    logger.info(
        "%s: warm-up finished in the background in %.1f s",
        ", ".join(dict.fromkeys(names)),
        time.perf_counter() - start,
    )


def main():
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    enable_compilation_cache()
    from explorer import LAUNCH_OPTIONS, build_demo, load_models, read_model_cards
    from explorer.models import default_model

    start = time.perf_counter()
    translators, failures = load_models(MODELS_DIR)
    demo = build_demo(translators, failures, read_model_cards(MODELS_DIR, translators))
    first = default_model(translators)
    if first:  # Sentences of up to 16 pieces: most of what visitors type.
        demo.service.warm_up([first], source_lengths=(16,))
    logger.info(
        "%d model(s) loaded, %s warmed up, in %.1f s",
        len(translators),
        first,
        time.perf_counter() - start,
    )
    # The rest meanwhile: the other models, then longer sources. A request
    # that needs one of them waits for its warm-up (it holds the model's
    # lock), as it would have waited to compile.
    rest = [name for name in translators if name != first] + [first] * bool(first)
    threading.Thread(
        target=warm_up_in_background, args=(demo.service, rest), daemon=True
    ).start()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), **LAUNCH_OPTIONS
    )


if __name__ == "__main__":
    main()
