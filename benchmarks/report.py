"""Writes docs/performance.md from the benchmark results.

    python -m benchmarks.report           # rewrite docs/performance.md
    python -m benchmarks.report --check   # exit 1 if it is out of date

Every section comes from one `benchmarks/results/<name>.json` (smoke-test
`*.quick.json` files are left out): what the benchmark measures, the exact
command, the machine and library versions, the settings, the table the
benchmark printed and its summary per backend. Paths are shown as names
(`/abs/path/saved_models/en-es` as `en-es`), and no date is shown: a figure
is described by its command and its machine.
"""

import argparse
import json
import pathlib
import shlex
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUTPUT = ROOT / "docs" / "performance.md"

HEADER = """\
# Performance

All figures are measurements, written by `python -m benchmarks.report` from
the JSON files in `benchmarks/results/` (every raw number is there). How each
benchmark works is in [benchmarks/README.md](../benchmarks/README.md). The
machine was a small shared CPU, so differences of a few percent are noise;
each section gives the load average at the end of its run. A figure compares
only with figures of the same command on the same machine.
"""
# Per benchmark: the section title, what it measures and how to read it.
SECTIONS = {
    "bench_attention": (
        "Attention: ours against `keras.layers.MultiHeadAttention`",
        "Forward and backward pass of one self-attention layer, compiled "
        "(`jax.jit` on JAX, `tf.function(jit_compile=True)` on TensorFlow), "
        "median step time, with Keras' weights copied into ours. ours/keras "
        "at or below 1.00 means ours is at least as fast. The explicit and "
        "fused columns time our two attention paths (einsum + softmax, and "
        "`keras.ops.dot_product_attention`); the faster one per backend is "
        "what `FUSED_ATTENTION` in `keras_mha/backend_config.py` selects.",
    ),
    "bench_training": (
        "Training throughput: ours against keras-hub's layers",
        "Training steps of `training.train.build_model` against the same "
        "architecture assembled from keras-hub's `TransformerEncoder` and "
        "`TransformerDecoder` (same optimizer, loss and length-bucketed "
        "batches); non-padding target tokens per second. keras-hub's layers "
        "have no dropout on the feed-forward hidden layer, so ours runs with "
        "`activation_dropout=0.0` here (the shipped models keep dropout "
        "there). The GEMM share is the matmul FLOPs of a repeat (padded "
        "positions included) per second over the fp32 matmul rate measured "
        "in the same process. On a CPU Keras trains TensorFlow models "
        "without XLA; our "
        "head projections run as plain matmuls there "
        "(`MATMUL_PROJECTIONS`), and on JAX the tied output projection has "
        "its own gradient (`TIED_LOGITS_GRADIENT`), both in "
        "`keras_mha/backend_config.py`.",
    ),
    "bench_training_loop": (
        "Training throughput: the real loop of a recipe",
        "What `python -m training.train --recipe NAME` runs, per backend and "
        "input pipeline: the recipe's model, its mixed training corpora "
        "tokenized and length-bucketed by tf.data (`tf`) or a Keras "
        "`PyDataset` of NumPy batches (`numpy`), and `model.fit` with the "
        "run's per-batch callbacks. Seconds per update after the warm-up "
        "updates (which compile the bucket shapes; a later update that "
        "still compiles is left out and counted); real target tokens of an "
        "average batch per second; the GEMM share is the matmul FLOPs of an "
        "average batch per second over the fp32 matmul rate measured in the "
        "same process. The fastest row is the backend and pipeline to train "
        "with on this CPU.",
    ),
    "bench_training_loop_bf16": (
        "Training throughput: bfloat16 matmuls",
        "The same loop on TensorFlow with tf.data, once in float32 (`tf`) "
        "and once under Keras' `mixed_bfloat16` policy (`tf+bf16`, the "
        "recipe setting `dtype_policy`, docs/training.md), in one process "
        "and written to its own file (`--output "
        "benchmarks/results/bench_training_loop_bf16.json`). The weights, "
        "optimizer, loss, layer norms and attention softmax stay in float32; "
        "the matmuls run in bfloat16, which a CPU with AMX runs several "
        "times and one with AVX512-BF16 about twice as fast as float32 (the "
        "two rate columns measure it). The bf16 GEMM share is the "
        "matmul FLOPs per second over the bfloat16 matmul rate measured in "
        "the same process. What the matmuls no longer take is left to the "
        "rest of an update: dropout's random masks, the layer norms, the "
        "optimizer and the input pipeline. JAX's XLA CPU backend ran "
        "bfloat16 matmuls no faster than float32 on the machines tried, so "
        "the comparison is made on TensorFlow.",
    ),
    "bench_architecture": (
        "Model shapes on the same training minutes",
        "Each candidate shape of a recipe trained from scratch by "
        "`python -m training.train` for the same minutes of training time, "
        "with the shipped model's tokenizer; its updates and the validation "
        "loss at the end of the budget. The lowest loss is the shape to train "
        "for a run of about that length.",
    ),
    "bench_decoding": (
        "Decoding",
        "(a) the keras.io way (the whole model again for every new token, "
        "eagerly) against our cached, compiled greedy search on the longest "
        "test sentences; (b) the whole spa-eng test set (1,500 sources, "
        "batch 64), greedy: the first pass of a new `Translator` (it "
        "compiles every shape), the first pass of a second one (on JAX the "
        "programs then come from the persistent compilation cache), warm "
        "passes without attention and with `top_k=5` (the bulk search: the "
        "texts stream through the 64 rows, a row taking the next text when "
        "its output ends; the texts are dealt to two such searches run at "
        "once on two threads, `Translator(streams=2)`) and with attention "
        "(batches of 64, two at a time); beam 4 "
        "on 256 sources; (c) one sentence of about ten words with attention "
        "capture, as the app asks for it. The *limit* rows divide each warm "
        "pass's time by the time its matrix multiplies alone would take: the "
        "model's matmul FLOPs for the pieces actually read and written "
        "(`benchmarks/roofline.py`) at the fp32 matmul rate of 256-wide "
        "operands measured in the same process; 1.0 would be a decoder that "
        "does nothing but its matmuls at that rate. The *floor* rows divide "
        "that rate by the rate of the decoder's own per-step matmuls alone in "
        "a compiled loop of as many rows (64, and 256 for beam 4): the time / "
        "limit of a search that did nothing but those matmuls, below which no "
        "search of this backend goes; the *streams* floor rows run two such "
        "loops at once, as the bulk searches run (64 rows each, and 128 for "
        "a beam share of 32 inputs). The *baseline* columns "
        "run the same measurements on the library of an earlier revision "
        "(`git worktree add baseline REV`, `--baseline baseline`); the ratio "
        "rows compare the two, measured back to back in one run. "
        "Absolute seconds vary up to 2x between machines of this kind; the "
        "ratios measured within one run are the comparison to read.",
    ),
    "bench_faithfulness": (
        "Faithfulness: deleting the word an explanation ranks first",
        "For Tatoeba test sources of the shipped en-es model and its own greedy "
        "translation (fixed), each method ranks the source words for every "
        "output piece: averaged cross-attention, gradient × input, integrated "
        "gradients (16 steps). Deleting the top-ranked word and scoring the "
        "same translation again gives the drop of that piece's log-probability; "
        "the random baseline is the mean drop over all words of the source. A "
        "larger drop means the explanation found a word the piece depends on. "
        "The summary says whether the app's default attribution method "
        "(integrated gradients) beats attention averaging; in the run shown it "
        "does not: deleting the word that attention ranks first costs a piece "
        "more log-probability than deleting the word either attribution method "
        "ranks first, though all three are far above a random word.",
    ),
    "bench_app": (
        "The app under load",
        "A live `python app.py` with every model of the models folder, "
        "called only through `gradio_client` on loopback: start-up (process "
        "start to the first page and to the first translation, with the "
        "phases the server logs: imports, building the page, loading and "
        "compiling the default model; the page is served while the models "
        "load and compile in the background), latency at 1, 4 and 16 "
        "concurrent clients, and the server's peak resident memory. Most of "
        "a single request's latency is Gradio's queue and the client's "
        "polling; the server's own translation time is shown separately.",
    ),
    "bench_app_startup": (
        "Start-up of the app",
        "`python -m benchmarks.bench_app --startup`: the first start (an "
        "empty compilation cache) and the cold start of the full run above, "
        "alone: from starting `python app.py` to the first page and to the "
        "first `/translate` answer, with the phases the server logs. Keras is "
        "imported first; the default model is loaded and its Translate "
        "button compiled in a thread while Gradio is imported and the page is "
        "built. On TensorFlow those first two programs are quick ones, "
        "compiled without XLA (`Translator.compiling`, about half the "
        "compile time; benchmarks/README.md has the measurement); the "
        "background warm-up then compiles their XLA programs, which replace "
        "them.",
    ),
    "bench_app_soak": (
        "A day of visitors: the soak test",
        "`python -m benchmarks.bench_app --soak`: 8 `gradio_client` clients "
        "send requests back to back for `--soak-minutes` (10 by default; "
        "the settings line says how long the run shown ran) to a live `python "
        "app.py` with the shipped models, a mix of every public endpoint "
        "(translate with every decoding option, top_k 0–10 and prefixes, "
        "score, align, attention, head, attribute) and permalinks, inputs of "
        "1 to 300 characters (`benchmarks/soak.py`). The workload starts once "
        "the server logs `warm-up finished` (every program a request can need "
        "is then compiled; the row says how many seconds after start); "
        "latencies are those after the first fifth of the run, overall and "
        "per kind of request; memory is the server's resident set; compiled "
        "programs are what each model keeps (bounded by "
        "`explorer.models.MAX_PROGRAMS`).",
    ),
    "bench_app_soak_tensorflow": (
        "A day of visitors on TensorFlow",
        "The same soak test against the app on the TensorFlow backend, run on "
        "its own (`--output benchmarks/results/bench_app_soak_tensorflow.json`) "
        "so that each backend's run has the 2-core CPU to itself.",
    ),
    "bench_browser": (
        "The page in a browser",
        "Debian's Chromium driven by Playwright against a live app on the "
        "shipped `en-es` model: click Translate until every view is drawn "
        "(a sentence of about ten words), switch head and layer, change the "
        "playback step (all drawn in the page from data sent once, no server "
        "request), and click an alternative so the server decodes again with "
        "that forced prefix.",
    ),
    "bench_alignment": (
        "Word alignment against human gold links",
        "Every gold pair of `../shared/data/align` (English–Spanish Europarl, "
        "English–French Hansards: pre-tokenized words and sure links) "
        "teacher-forced through the shipped model of its pair; each method "
        "of `keras_mha.alignment` turns the cross-attention into word links "
        "(`+union`: row and column argmaxes, `+inter`: both, `+p0.3`: every "
        "link of weight at least 0.3, `+diag`: a prior toward the diagonal "
        "first; `attribution:*`: links from the absolute gradient x input "
        "contributions instead of attention; `deletion*`: from how much each "
        "target word's log-probability drops when one source word is left "
        "out, `keras_mha.deletion`, one more teacher-forced pass per source "
        "word). AER, precision and recall in %, lower AER is better; the table "
        "shows the methods with the lowest mean AER and the two classic ones, "
        "and a reference that reads no model (*diagonal*: each target word "
        "linked to the source word at the same relative position). The "
        "attention methods beat that reference by only a few points, so these "
        "models' cross-attention is a weak aligner; asking the model what "
        "each word changed (deletion) is a far better one. The gold links are "
        "sparse (sure links only, many words unlinked), which caps the "
        "precision of any method that links every word. Both gold sets are "
        "out of the models' training domain (parliament speech, lowercased), "
        "so they measure the recovery of word correspondences, not "
        "translation quality.",
    ),
}
ORDER = (
    "bench_attention",
    "bench_training",
    "bench_decoding",
    "bench_alignment",
    "bench_faithfulness",
    "bench_app",
    "bench_app_startup",
    "bench_app_soak",
    "bench_app_soak_tensorflow",
    "bench_browser",
)


def portable_command(command):
    """The command as typed from the repository root: `python -m ...`."""
    words = shlex.split(command)
    if words and words[0].rsplit("/", 1)[-1].startswith("python"):
        words[0] = "python"
    return shlex.join(_name(word) for word in words)


def _name(value):
    """An absolute path as its last component; anything else unchanged."""
    if isinstance(value, str) and value.startswith("/"):
        return value.rstrip("/").rsplit("/", 1)[-1]
    return value


def _is_path(value):
    return isinstance(value, str) and value.startswith("/")


# A mapping in a summary (e.g. every method's score) shows this many
# entries in the doc; the JSON keeps them all.
SHOWN_ENTRIES = 5


def _value(value):
    if isinstance(value, dict):
        shown = ", ".join(
            f"{key}: ({_value(entry)})"
            if isinstance(entry, dict)
            else f"{key}: {_value(entry)}"
            for key, entry in list(value.items())[:SHOWN_ENTRIES]
        )
        more = len(value) - SHOWN_ENTRIES
        return f"{shown} and {more} more in the JSON" if more > 0 else shown
    if isinstance(value, list):
        return " / ".join(
            "×".join(map(str, v)) if isinstance(v, list) else str(v) for v in value
        )
    return str(_name(value))


def machine_line(machine):
    versions = machine.get("versions", {})
    libraries = ", ".join(
        f"{name} {versions[key]}"
        for name, key in (
            ("Keras", "keras"),
            ("TensorFlow", "tensorflow"),
            ("JAX", "jax"),
            ("keras-hub", "keras-hub"),
            ("Gradio", "gradio"),
        )
        if versions.get(key)
    )
    system = machine.get("platform", "").split("-")[0]
    load = machine.get("load_average_1_5_15") or ["?"]
    return (
        f"{machine.get('cpu_model') or machine.get('processor') or 'CPU'}, "
        f"{machine.get('cpu_count')} cores, {machine.get('machine')}, {system}, "
        f"Python {machine.get('python')}; {libraries}; load average "
        f"{load[0]} at the end of the run."
    )


def summary_table(summary):
    backends = list(summary)
    keys = []
    for facts in summary.values():
        keys += [k for k in facts if k not in keys]
    lines = [
        "| summary | " + " | ".join(backends) + " |",
        "|---" * (len(backends) + 1) + "|",
    ]
    for key in keys:
        cells = [_value(summary[b].get(key, "–")) for b in backends]
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return lines


def section(result):
    name = result.get("section", result["benchmark"])
    title, description = SECTIONS.get(name, (name, ""))
    settings = ", ".join(
        f"{key.replace('_', ' ')} {_value(value)}"
        for key, value in result.get("settings", {}).items()
        # Where files were is no setting, except which model was measured.
        if value not in (None, "", (), [], {})
        and (key == "model" or not _is_path(value))
    )
    lines = [f"## {title}", ""]
    if description:
        lines += [textwrap.fill(description, 78), ""]
    lines += [
        "```bash",
        portable_command(result["command"]),
        "```",
        "",
        textwrap.fill(f"Machine: {machine_line(result.get('machine', {}))}", 78),
        "",
        textwrap.fill(f"Settings: {settings}.", 78),
        "",
        result["table"].strip(),
        "",
    ]
    if result.get("summary"):
        lines += summary_table(result["summary"]) + [""]
    return lines


def load_results(results_dir=RESULTS):
    """The full (not `--quick`) results, in the order of `ORDER`.

    Each result is keyed by its file's name (`"section"`), so that one
    benchmark written to two files (e.g. one soak per backend) gives two
    sections.
    """
    results = []
    for path in sorted(results_dir.glob("*.json")):
        if path.name.endswith(".quick.json"):
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        if not result.get("quick"):
            results.append(dict(result, section=path.stem))
    rank = {name: index for index, name in enumerate(ORDER)}
    return sorted(results, key=lambda r: (rank.get(r["section"], 99), r["section"]))


def report(results_dir=RESULTS):
    """The text of docs/performance.md."""
    lines = [HEADER]
    for result in load_results(results_dir):
        lines += section(result)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file is out of date"
    )
    args = parser.parse_args(argv)
    text = report()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            sys.exit(
                f"{OUTPUT.relative_to(ROOT)} is out of date: run "
                "python -m benchmarks.report"
            )
        return
    OUTPUT.write_text(text, encoding="utf-8")
    print(OUTPUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
