"""Decoding speed of a trained `keras_mha.Translator`: cached against uncached
greedy search, test-set throughput, and single-sentence latency.

    python -m benchmarks.bench_decoding --model saved_models/en-es \\
        --data-dir ../shared/data                     # full, both backends
    python -m benchmarks.bench_decoding --model tests/fixtures/models/en-es-tiny \\
        --data-dir tests/fixtures --quick             # smoke test

(a) Cache. The longest test sources (by source pieces) are translated one by
    one, batch 1, by `decoding.greedy_search_uncached` (the keras.io way: the
    whole model runs again, eagerly, for every new token) and by
    `Translator.translate` (key/value cache, one compiled search), both with
    the same output limit and stopping at the end token, on the same source
    padded as the translator pads it. Both are warmed up by one untimed pass
    over the sentences (on JAX the eager uncached search compiles every op
    for every new decoder length), then timed interleaved. Cached is timed
    without attention capture (like the uncached search) and with it.
(b) Throughput. Every unique test source (1,500 for spa-eng) is translated
    with `translate(sources, batch_size=64, return_attention=False)`, greedy
    and with beam 4. The first pass is "cold" (it compiles every batch shape),
    the second "warm".
(c) Latency. One test source of about ten words, `translate(text)` with
    attention capture (as the app does), timed after a warm-up.
"""

import argparse
import dataclasses
import math
import pathlib
import sys
import time

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_decoding"
SOURCE_LENGTH_STEP = 8  # Translator pads source lengths to multiples of this.


@dataclasses.dataclass(frozen=True)
class Settings:
    compare_sentences: int = 20  # (a) sentences, the longest test sources.
    compare_max_length: int = 40  # (a) most output pieces (a multiple of 8).
    max_sources: int | None = None  # (b) cap on test sources (None: all).
    batch_size: int = 64  # (b)
    beam_size: int = 4  # (b)
    beam_sources: int | None = None  # (b) cap on sources for beam (None: all).
    latency_words: int = 10  # (c) words of the latency sentence.
    latency_warmup: int = 3  # (c)
    latency_runs: int = 50  # (c)


FULL = Settings()
QUICK = Settings(
    compare_sentences=2,
    compare_max_length=8,
    max_sources=8,
    batch_size=8,
    latency_runs=5,
)


# ------------------------------------------------------------ worker
def load_sources(args, settings):
    """Unique test sources, in file order."""
    from training import data

    pairs = data.load_pairs(args.dataset, "test", data_dir=args.data_dir)
    sources, _ = data.group_references(pairs)
    return sources[: settings.max_sources]


def compare_cached(translator, sentences, max_length):
    """(a) Uncached against cached greedy search at batch 1."""
    import numpy as np

    from keras_mha.decoding import greedy_search_uncached
    from keras_mha.translator import clean_text

    tokenizer = translator.tokenizer
    outputs = {}

    def uncached(i):
        ids = tokenizer.encode(clean_text(sentences[i]))[: translator.max_source_length]
        # Padded as the translator pads a batch of one: the same input, and
        # few shapes for JAX's eager mode to compile.
        length = math.ceil(len(ids) / SOURCE_LENGTH_STEP) * SOURCE_LENGTH_STEP
        source = np.zeros((1, min(length, translator.max_source_length)), "int32")
        source[0, : len(ids)] = ids  # (1, S)
        tokens = greedy_search_uncached(
            translator.model, source, max_length, translator.bos_id, translator.eos_id
        )
        tokens = [int(t) for t in np.asarray(tokens)[0] if t != 0]  # to </s>
        outputs[("uncached", i)] = [tokenizer.id_to_piece(t) for t in tokens]

    def cached(i, return_attention):
        translation = translator.translate(
            sentences[i], max_length=max_length, return_attention=return_attention
        )
        outputs[("cached", i)] = translation.target_tokens

    tasks = {}
    for i in range(len(sentences)):
        tasks[("uncached", i)] = lambda i=i: uncached(i)
        tasks[("cached", i)] = lambda i=i: cached(i, False)
        tasks[("attention", i)] = lambda i=i: cached(i, True)
    seconds = harness.time_interleaved(tasks, warmup=1, repeats=1)
    result = {"sentences": len(sentences), "max_length": max_length}
    for kind in ("uncached", "cached", "attention"):
        times = [seconds[(kind, i)][0] for i in range(len(sentences))]
        result[kind] = {
            "ms_per_sentence": round(1000 * sum(times) / len(times), 1),
            "seconds": [round(t, 4) for t in times],
        }
    for kind in ("uncached", "cached"):
        lengths = [len(outputs[(kind, i)]) for i in range(len(sentences))]
        result[kind]["tokens_per_sentence"] = round(sum(lengths) / len(lengths), 1)
    result["identical_outputs"] = sum(
        outputs[("uncached", i)] == outputs[("cached", i)]
        for i in range(len(sentences))
    )
    result["speedup"] = round(
        result["uncached"]["ms_per_sentence"] / result["cached"]["ms_per_sentence"], 2
    )
    return result


def throughput(translator, sources, settings, beam_size):
    """(b) A cold and a warm pass over every source."""
    result = {"sentences": len(sources), "beam_size": beam_size}
    for run in ("cold", "warm"):
        start = time.perf_counter()
        translations = translator.translate(
            sources,
            beam_size=beam_size,
            return_attention=False,
            batch_size=settings.batch_size,
        )
        seconds = time.perf_counter() - start
        result[run] = {
            "seconds": round(seconds, 2),
            "sentences_per_second": round(len(sources) / seconds, 1),
        }
    tokens = sum(len(t.target_tokens) for t in translations)
    result["tokens_per_sentence"] = round(tokens / len(sources), 1)
    return result


def latency(translator, sentence, settings):
    """(c) One sentence at a time, with attention capture."""
    seconds = harness.time_interleaved(
        {"translate": lambda: translator.translate(sentence)},
        warmup=settings.latency_warmup,
        repeats=settings.latency_runs,
    )["translate"]
    return dict(sentence=sentence, **harness.summarize_ms(seconds))


def run_worker(args, settings):
    import keras

    from keras_mha import Translator

    backend = keras.backend.backend()
    translator = Translator.load(args.model)
    sources = load_sources(args, settings)
    tokenizer = translator.tokenizer
    longest = sorted(sources, key=lambda s: len(tokenizer.encode(s)), reverse=True)

    result = {"model": args.model, "parameters": translator.model.count_params()}
    # Both searches get the same output limit (the translator caps it too).
    max_length = min(settings.compare_max_length, translator.model.max_length)
    result["cache"] = compare_cached(
        translator, longest[: settings.compare_sentences], max_length
    )
    harness.log(f"[{backend}] cache: {result['cache']['speedup']}x")
    result["greedy"] = throughput(translator, sources, settings, beam_size=1)
    harness.log(f"[{backend}] greedy: {result['greedy']['warm']}")
    beam_sources = sources[: settings.beam_sources]
    result["beam"] = throughput(translator, beam_sources, settings, settings.beam_size)
    harness.log(f"[{backend}] beam {settings.beam_size}: {result['beam']['warm']}")
    sentence = min(sources, key=lambda s: abs(len(s.split()) - settings.latency_words))
    result["latency"] = latency(translator, sentence, settings)
    harness.log(f"[{backend}] latency p50 {result['latency']['median_ms']} ms")
    return result


# ------------------------------------------------------------ parent
# (label, dotted path into a worker result, target, digits) of each row.
METRICS = (
    ("(a) uncached (eager), ms/sentence", "cache.uncached.ms_per_sentence", "", 1),
    ("(a) cached greedy, ms/sentence", "cache.cached.ms_per_sentence", "", 1),
    ("(a) cached + attention, ms/sentence", "cache.attention.ms_per_sentence", "", 1),
    ("(a) speed-up cached vs uncached", "cache.speedup", ">= 3", 2),
    ("(a) pieces/sentence, uncached", "cache.uncached.tokens_per_sentence", "", 1),
    ("(a) pieces/sentence, cached", "cache.cached.tokens_per_sentence", "", 1),
    ("(a) identical outputs", "cache.identical_outputs", "", 0),
    ("(b) greedy, cold pass, s", "greedy.cold.seconds", "", 2),
    ("(b) greedy, warm pass, s", "greedy.warm.seconds", "<= 15", 2),
    ("(b) greedy, warm, sentences/s", "greedy.warm.sentences_per_second", "", 1),
    ("(b) beam, cold pass, s", "beam.cold.seconds", "", 2),
    ("(b) beam, warm pass, s", "beam.warm.seconds", "", 2),
    ("(b) beam, warm, sentences/s", "beam.warm.sentences_per_second", "", 1),
    ("(c) latency p50, ms", "latency.median_ms", "<= 100", 1),
    ("(c) latency p95, ms", "latency.p95_ms", "", 1),
)


def report(settings, backends):
    metrics = [
        (label.replace("beam", f"beam {settings.beam_size}"), path, target, digits)
        for label, path, target, digits in METRICS
    ]
    table = harness.metric_table(metrics, backends)
    summary = {
        name: {
            "cache_speedup": harness.lookup(result, "cache.speedup"),
            "greedy_warm_seconds": harness.lookup(result, "greedy.warm.seconds"),
            "latency_p50_ms": harness.lookup(result, "latency.median_ms"),
        }
        for name, result in backends.items()
    }
    sources = [harness.lookup(r, "greedy.sentences") for r in backends.values()]
    note = (
        f"(b) translates {max(filter(None, sources), default=0)} unique test "
        f"sources, batch {settings.batch_size}; the 15 s target is for the 1,500 "
        "of spa-eng."
    )
    return table, f"{table}\n\n{note}", summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--model", default="saved_models/en-es", help="model folder")
    parser.add_argument("--data-dir", default="../shared/data", help="corpora folder")
    parser.add_argument("--dataset", default="spa-eng", help="training.data key")
    parser.add_argument("--latency-runs", type=int, help="(c) timed translations")
    parser.add_argument(
        "--compare-sentences", type=int, help="(a) sentences for cached/uncached"
    )
    parser.add_argument("--beam-sources", type=int, help="(b) sources for beam")
    args = parser.parse_args(argv)
    args.model = str(pathlib.Path(args.model).resolve())
    args.data_dir = str(pathlib.Path(args.data_dir).resolve())
    settings = QUICK if args.quick else FULL
    if args.latency_runs:
        settings = dataclasses.replace(settings, latency_runs=args.latency_runs)
    if args.beam_sources:
        settings = dataclasses.replace(settings, beam_sources=args.beam_sources)
    if args.compare_sentences:
        settings = dataclasses.replace(
            settings, compare_sentences=args.compare_sentences
        )

    if args.backend_worker:
        harness.finish_worker(args, run_worker(args, settings))
        return 0

    backends = harness.run_workers(__file__, args.backends)
    table, text, summary = report(settings, backends)
    print(text)
    settings = dict(dataclasses.asdict(settings), model=args.model)
    settings.update(data_dir=args.data_dir, dataset=args.dataset)
    path = harness.write_results(NAME, args, settings, backends, table, summary)
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
