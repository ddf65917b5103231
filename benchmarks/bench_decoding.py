"""Decoding speed of a trained `keras_mha.Translator`: cached against uncached
greedy search, test-set throughput, and single-sentence latency.

    python -m benchmarks.bench_decoding --model saved_models/en-es \\
        --data-dir ../shared/data                     # full, both backends
    python -m benchmarks.bench_decoding --model tests/fixtures/models/en-es-tiny \\
        --data-dir tests/fixtures --quick             # smoke test

(a) Cache. The longest test sources (by source pieces) are translated one by
    one, batch 1, by `decoding.greedy_search_uncached` (the keras.io way: the
    whole model runs again, eagerly, on the target padded to the output
    limit, for every new token) and by
    `Translator.translate` (key/value cache, one compiled search), both with
    the same output limit and stopping at the end token, on the same source
    padded as the translator pads it. Both are warmed up by one untimed pass
    over the sentences (on JAX the eager uncached search compiles every op
    for each source shape), then timed interleaved. Cached is timed
    without attention capture (like the uncached search) and with it.
(b) Throughput. Every unique test source (1,500 for spa-eng) is translated
    with `translate(sources, batch_size=64)`, greedy: a first pass in a new
    `Translator` (it compiles every batch shape; on JAX with an empty
    persistent compilation cache), a first pass in a second new `Translator`
    (JAX: the compiled programs now come from that disk cache, as in a new
    process), then warm passes without attention and with `top_k=5`
    alternatives (the bulk search: the texts of each source length stream
    through the 64 rows, `decoding.RefillGreedySearch`, dealt to
    `Translator.streams` such searches at once) and with attention
    (batches of 64, each as long as its longest output); then
    beam 4, warm. Each warm pass is also divided by its *limit*, the time
    its matmul FLOPs need at the fp32 matmul rate measured in the same
    process, and the *floor* rows divide that rate by the rate of the
    decoder's own matmuls alone in a compiled loop of as many rows
    (`benchmarks.roofline`): a search that did nothing but its matmuls; the
    *streams* floor rows run `Translator.streams` such loops at once.

`--baseline DIR` runs every worker a second time with `keras_mha` imported
from DIR, a checkout of another revision (`git worktree add DIR REV`), and
reports the ratios: one run measures before and after a change.
(c) Latency. One test source of about ten words, `translate(text)` with
    attention capture (as the app does), timed after a warm-up.
"""

import argparse
import dataclasses
import math
import os
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
    compare_sentences: int = 5  # (a) sentences, the longest test sources.
    compare_max_length: int = 40  # (a) most output pieces (a multiple of 8).
    max_sources: int | None = None  # (b) cap on test sources (None: all).
    batch_size: int = 64  # (b)
    beam_size: int = 4  # (b)
    beam_sources: int | None = 256  # (b) cap on sources for beam (None: all).
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


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def throughput(load, sources, settings):
    """(b) First and warm passes over every source, greedy and beam."""
    import inspect

    translator = load()
    has_top_k = "top_k" in inspect.signature(translator.translate).parameters
    batch = settings.batch_size
    result = {"sentences": len(sources), "batch_size": batch}

    def greedy(t, **kwargs):
        return t.translate(sources, batch_size=batch, **kwargs)

    seconds, translations = _timed(lambda: greedy(translator, return_attention=False))
    result["first"] = round(seconds, 3)
    again = load()  # New compiled functions: traced (and on JAX loaded) again.
    result["first_again"] = round(
        _timed(lambda: greedy(again, return_attention=False))[0], 3
    )
    passes = {
        "warm": dict(return_attention=False),
        "warm_attention": dict(return_attention=True),
    }
    if has_top_k:
        passes["warm_top_k"] = dict(return_attention=False, top_k=5)
        greedy(translator, **passes["warm_top_k"])  # Compile, untimed.
    greedy(translator, return_attention=True)  # Compile, untimed.
    for name, kwargs in passes.items():
        result[name] = round(
            min(_timed(lambda: greedy(translator, **kwargs))[0] for _ in range(2)), 3
        )
    result["sentences_per_second"] = round(len(sources) / result["warm"], 1)
    tokens = sum(len(t.target_tokens) for t in translations)
    result["tokens_per_sentence"] = round(tokens / len(sources), 1)
    if has_top_k:
        result["top_k_cost"] = round(result["warm_top_k"] / result["warm"], 3)
    beam_sources = sources[: settings.beam_sources]
    beam = dict(beam_size=settings.beam_size, return_attention=False, batch_size=batch)
    beam_translations = translator.translate(beam_sources, **beam)  # Compile.
    with_attention = dict(beam, return_attention=True)
    translator.translate(beam_sources, **with_attention)  # Compile, untimed.
    result["beam"] = {
        "sentences": len(beam_sources),
        "beam_size": settings.beam_size,
        "warm": round(_timed(lambda: translator.translate(beam_sources, **beam))[0], 3),
        "warm_attention": round(
            _timed(lambda: translator.translate(beam_sources, **with_attention))[0], 3
        ),
    }
    result["limit"] = limit(translator, translations, beam_translations, result)
    return result


def limit(translator, greedy, beam, result):
    """Each warm pass's time / the time its matmul FLOPs need at the fp32
    matmul rate measured now, in this process (`benchmarks.roofline`)."""
    from benchmarks import roofline

    model = translator.model

    def flops(translations, beam_size):
        return sum(
            roofline.translation_flops(
                model, len(t.source_tokens), len(t.target_tokens), beam_size
            )
            for t in translations
        )

    rate = roofline.matmul_rate()
    greedy_flops = flops(greedy, 1)
    beam_flops = flops(beam, result["beam"]["beam_size"])
    out = {
        "matmul_gflop_per_second": round(rate / 1e9, 1),
        "greedy_gflop": round(greedy_flops / 1e9, 2),
        "beam_gflop": round(beam_flops / 1e9, 2),
    }
    # The floor: the decoder's matmuls alone in a compiled loop, as many
    # rows as the greedy batch and as the beam's hypotheses; then as the
    # bulk searches run, `streams` loops at once (a beam share has
    # `batch_size // streams` inputs).
    streams = getattr(translator, "streams", 1)
    batch, beam_size = result["batch_size"], result["beam"]["beam_size"]
    out["streams"] = streams
    for name, rows, loops in (
        ("greedy", batch, 1),
        ("beam", batch * beam_size, 1),
        ("greedy_streams", batch, streams),
        ("beam_streams", max(1, batch // streams) * beam_size, streams),
    ):
        loop_rate = roofline.decoder_loop_rate(model, rows, loops=loops)
        out[f"{name}_loop_rows"] = rows
        out[f"{name}_loop_gflop_per_second"] = round(loop_rate / 1e9, 1)
        out[f"{name}_floor_over_limit"] = round(rate / loop_rate, 2)
    for name, seconds, work in (
        ("greedy", result["warm"], greedy_flops),
        ("greedy_attention", result["warm_attention"], greedy_flops),
        ("beam", result["beam"]["warm"], beam_flops),
        ("beam_attention", result["beam"]["warm_attention"], beam_flops),
    ):
        out[f"{name}_limit_seconds"] = round(work / rate, 3)
        out[f"{name}_over_limit"] = round(seconds / (work / rate), 2)
    return out


def latency(translator, sentence, settings):
    """(c) One sentence at a time, with attention capture."""
    seconds = harness.time_interleaved(
        {"translate": lambda: translator.translate(sentence, return_attention=True)},
        warmup=settings.latency_warmup,
        repeats=settings.latency_runs,
    )["translate"]
    return dict(sentence=sentence, **harness.summarize_ms(seconds))


def run_worker(args, settings):
    import os
    import tempfile

    code = os.environ.get(CODE_ENV)
    if code:  # Measure another revision's library.
        sys.path.insert(0, code)
    import keras

    import keras_mha
    from keras_mha import Translator

    backend = keras.backend.backend()
    cache_dir = tempfile.mkdtemp(prefix="keras_mha_jax_cache_")
    try:
        from keras_mha.backend_config import enable_compilation_cache
    except ImportError:  # A revision without a persistent compilation cache.
        compilation_cache = False
    else:
        compilation_cache = enable_compilation_cache(cache_dir)
    translator = Translator.load(args.model)
    sources = load_sources(args, settings)
    tokenizer = translator.tokenizer
    longest = sorted(sources, key=lambda s: len(tokenizer.encode(s)), reverse=True)

    result = {
        "model": args.model,
        "library": str(pathlib.Path(keras_mha.__file__).parent),
        "compilation_cache": compilation_cache,
        "parameters": translator.model.count_params(),
    }
    result["throughput"] = throughput(
        lambda: Translator.load(args.model), sources, settings
    )
    harness.log(f"[{backend}] throughput: {result['throughput']}")
    # Both searches get the same output limit (the translator caps it too).
    max_length = min(settings.compare_max_length, translator.model.max_length)
    if settings.compare_sentences:
        result["cache"] = compare_cached(
            translator, longest[: settings.compare_sentences], max_length
        )
        harness.log(f"[{backend}] cache: {result['cache']['speedup']}x")
    sentence = min(sources, key=lambda s: abs(len(s.split()) - settings.latency_words))
    result["latency"] = latency(translator, sentence, settings)
    harness.log(f"[{backend}] latency p50 {result['latency']['median_ms']} ms")
    return result


# ------------------------------------------------------------ parent
# (label, dotted path into a worker result, target, digits) of each row.
METRICS = (
    ("(b) greedy, first pass, s", "throughput.first", "<= 6", 2),
    ("(b) greedy, first pass in a new Translator, s", "throughput.first_again", "", 2),
    ("(b) greedy, warm, s", "throughput.warm", "<= 3", 2),
    ("(b) greedy, warm, attention, s", "throughput.warm_attention", "", 2),
    ("(b) greedy, warm, top_k=5, s", "throughput.warm_top_k", "", 2),
    ("(b) top_k=5 / plain", "throughput.top_k_cost", "<= 1.10", 3),
    ("(b) greedy, warm, sentences/s", "throughput.sentences_per_second", "", 1),
    ("(b) beam, warm, s", "throughput.beam.warm", "", 2),
    ("(b) beam, warm, attention, s", "throughput.beam.warm_attention", "", 2),
    (
        "limit: fp32 matmul rate, GFLOP/s",
        "throughput.limit.matmul_gflop_per_second",
        "",
        1,
    ),
    ("limit: greedy matmul work, GFLOP", "throughput.limit.greedy_gflop", "", 1),
    (
        "limit: greedy, time / limit",
        "throughput.limit.greedy_over_limit",
        "<= 2 jax, <= 3 tf",
        2,
    ),
    (
        "floor: the decoder's matmuls alone in a loop, batch rows, time / limit",
        "throughput.limit.greedy_floor_over_limit",
        "",
        2,
    ),
    (
        "floor: the same, batch x beam rows, time / limit",
        "throughput.limit.beam_floor_over_limit",
        "",
        2,
    ),
    (
        "floor: streams loops at once, batch rows each, time / limit",
        "throughput.limit.greedy_streams_floor_over_limit",
        "",
        2,
    ),
    (
        "floor: streams loops at once, batch / streams x beam rows each, time / limit",
        "throughput.limit.beam_streams_floor_over_limit",
        "",
        2,
    ),
    (
        "limit: greedy + attention, time / limit",
        "throughput.limit.greedy_attention_over_limit",
        "",
        2,
    ),
    (
        "limit: beam, time / limit",
        "throughput.limit.beam_over_limit",
        "<= 3 jax, <= 4 tf",
        2,
    ),
    (
        "limit: beam + attention, time / limit",
        "throughput.limit.beam_attention_over_limit",
        "",
        2,
    ),
    ("(a) uncached (eager), ms/sentence", "cache.uncached.ms_per_sentence", "", 1),
    ("(a) cached greedy, ms/sentence", "cache.cached.ms_per_sentence", "", 1),
    ("(a) speed-up cached vs uncached", "cache.speedup", ">= 3", 2),
    ("(a) identical outputs", "cache.identical_outputs", "", 0),
    ("(c) latency p50, ms", "latency.median_ms", "<= 100", 1),
    ("(c) latency p95, ms", "latency.p95_ms", "", 1),
)
# Compared with the baseline: (label, path, target).
RATIOS = (
    ("greedy warm, this / baseline", "throughput.warm", "<= 1.05"),
    ("greedy warm + attention, this / baseline", "throughput.warm_attention", ""),
    ("greedy first pass, this / baseline", "throughput.first", ""),
    ("beam warm, this / baseline", "throughput.beam.warm", ""),
)
# Environment variable that points a worker at another revision's library.
CODE_ENV = "KERAS_MHA_BENCH_CODE"
BASELINE = "baseline"


def report(settings, backends):
    metrics = [
        (label.replace("beam", f"beam {settings.beam_size}"), path, target, digits)
        for label, path, target, digits in METRICS
    ]
    names = list(backends)
    headers = ["metric", "target", *names]
    rows = []
    for label, path, target, digits in metrics:
        values = [harness.lookup(backends[name], path) for name in names]
        rows.append([label, target, *(harness.fmt(v, digits) for v in values)])
    current = [name for name in names if not name.endswith(BASELINE)]
    summary = {}
    for name in current:
        summary[name] = {
            "greedy_warm_seconds": harness.lookup(backends[name], "throughput.warm"),
            "greedy_first_seconds": harness.lookup(backends[name], "throughput.first"),
            "top_k_cost": harness.lookup(backends[name], "throughput.top_k_cost"),
        }
        baseline = backends.get(f"{name} {BASELINE}")
        if baseline is None:
            continue
        for label, path, target in RATIOS:
            value = harness.ratio(
                harness.lookup(backends[name], path), harness.lookup(baseline, path)
            )
            summary[name][label] = value
    for label, path, target in RATIOS:
        if any(f"{name} {BASELINE}" in backends for name in current):
            row = [label, target]
            for name in names:
                row.append(summary.get(name, {}).get(label, ""))
            rows.append(row)
    for name in names:
        if "error" in backends[name]:
            rows.append([f"{name} failed", "", backends[name]["error"]])
    table = harness.markdown_table(headers, rows)
    sources = [harness.lookup(r, "throughput.sentences") for r in backends.values()]
    note = (
        f"(b) translates {max(filter(None, sources), default=0)} unique test "
        f"sources, batch {settings.batch_size}; the targets are for the 1,500 "
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
    parser.add_argument(
        "--baseline",
        help="a checkout of another revision (git worktree add DIR REV): every "
        "worker runs again with its keras_mha, and the ratios are reported",
    )
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

    backends = {}
    for backend in args.backends:  # Each backend: this revision, then baseline.
        backends.update(harness.run_workers(__file__, [backend]))
        if args.baseline:
            os.environ[CODE_ENV] = str(pathlib.Path(args.baseline).resolve())
            result = harness.run_workers(__file__, [backend])[backend]
            backends[f"{backend} {BASELINE}"] = result
            del os.environ[CODE_ENV]
    table, text, summary = report(settings, backends)
    print(text)
    settings = dict(dataclasses.asdict(settings), model=args.model)
    settings.update(data_dir=args.data_dir, dataset=args.dataset)
    settings.update(baseline=args.baseline)
    path = harness.write_results(NAME, args, settings, backends, table, summary)
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
