"""Faithfulness of explanations: does removing the source word a method
ranks highest for an output piece lower that piece's probability more than
removing a random word?

    python -m benchmarks.bench_faithfulness                # 200 test sources
    python -m benchmarks.bench_faithfulness --quick        # 20, a smoke test

For each Tatoeba test source (of at least four words) of the shipped model,
the model's own greedy translation is the fixed target. Every method scores
each source word for each output piece: attention (cross-attention averaged
over layers and heads, summed over the word's pieces), gradient x input and
integrated gradients (absolute contributions summed over the word's pieces).
The source is scored again with each word deleted (one teacher-forced pass
per deletion, batched), so the drop of piece t's log-probability is known
for every word. A method's drop is the drop for the word it ranks first;
the random baseline averages the drop over all words (the expected drop of
deleting a word at random). The deletion test of Arras et al. (2016) and
DeYoung et al. (2020, "comprehensiveness") at one word.

Shape legend: T output pieces, W source words.
"""

import argparse
import pathlib
import sys

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_faithfulness"
METHODS = ("attention", "grad_x_input", "integrated_gradients")


def word_scores(matrix, groups):
    """`(T, S)` piece scores -> `(T, W)` word scores (summed over pieces)."""
    import numpy as np

    return np.stack([np.abs(matrix[:, g]).sum(-1) for g in groups], axis=-1)


def measure(model_dir, dataset, count, data_dir=None):
    import numpy as np

    from keras_mha import Translator, alignment
    from keras_mha.tokens import word_groups
    from training.evaluate import references_by_source

    translator = Translator.load(model_dir)
    sources, _ = references_by_source(dataset, "test", data_dir)
    sources = [s for s in sources if len(s.split()) >= 4][:count]
    drops = {m: [] for m in METHODS}
    random_drops, wins = [], {m: 0 for m in METHODS}
    pieces = 0
    for source in sources:
        words = source.split()
        own = translator.translate(source, return_attention=False)
        target = [p for p in own.target_tokens if p != "</s>"]
        if not target:
            continue
        base = translator.score(source, target, top_k=0)
        groups = [
            g
            for g in word_groups(base.source_tokens)
            if base.source_tokens[g[0]] != "</s>"
        ]
        if len(groups) != len(words):
            continue  # Words that do not map one to one onto pieces.
        deleted = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
        rescored = translator.score(
            deleted, [target] * len(deleted), top_k=0, return_attention=False
        )
        base_log = np.log(np.asarray(base.token_probs))  # (T,)
        # (W, T): the drop of each piece's log-probability per deleted word.
        drop = np.stack(
            [base_log - np.log(np.asarray(r.token_probs)) for r in rescored]
        )
        scores = {
            "attention": word_scores(
                alignment.piece_attention(base, "average"), groups
            ),
            "grad_x_input": word_scores(
                translator.attribute(source, target, method="grad_x_input").source,
                groups,
            ),
            "integrated_gradients": word_scores(
                translator.attribute(source, target, steps=16).source, groups
            ),
        }
        T = drop.shape[1]
        pieces += T
        random_drops.append(drop.mean(axis=0))  # (T,) expected random drop
        for method, matrix in scores.items():
            top = np.argmax(matrix[:T], axis=-1)  # (T,) word ranked first
            chosen = drop[top, np.arange(T)]
            drops[method].append(chosen)
            wins[method] += int(np.sum(chosen > drop.mean(axis=0)))
    random_all = np.concatenate(random_drops)
    result = {
        "model": pathlib.Path(model_dir).name,
        "dataset": dataset,
        "sources": len(random_drops),
        "pieces": pieces,
        "random": round(float(random_all.mean()), 4),
        "methods": {},
    }
    for method in METHODS:
        chosen = np.concatenate(drops[method])
        result["methods"][method] = {
            "mean_drop": round(float(chosen.mean()), 4),
            "over_random": round(
                float(chosen.mean() / max(random_all.mean(), 1e-9)), 2
            ),
            "beats_random_percent": round(100 * wins[method] / max(pieces, 1), 1),
        }
    return result


def worker(args):
    count = 20 if args.quick else args.sources
    result = measure(
        harness.ROOT / "saved_models" / args.model, args.dataset, count, args.data_dir
    )
    harness.finish_worker(args, result)


def table_of(result):
    headers = [
        "method",
        "mean log-prob drop (nats)",
        "÷ random word",
        "pieces where it beats random (%)",
    ]
    rows = [["random word (expected)", str(result["random"]), "1.00", "–"]]
    for method, r in result["methods"].items():
        rows.append(
            [
                method,
                str(r["mean_drop"]),
                str(r["over_random"]),
                str(r["beats_random_percent"]),
            ]
        )
    return (
        f"{result['model']} on {result['dataset']} test: {result['sources']} sources, "
        f"{result['pieces']} output pieces\n\n" + harness.markdown_table(headers, rows)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_arguments(parser)
    parser.set_defaults(backends=("jax",))
    parser.add_argument("--model", default="en-es")
    parser.add_argument("--dataset", default="spa-eng")
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.backend_worker:
        return worker(args)
    backends = harness.run_workers(__file__, args.backends)
    tables, summary = [], {}
    for backend, result in backends.items():
        if "error" in result:
            continue
        tables.append(f"{backend}: {table_of(result)}")
        best = max(result["methods"], key=lambda m: result["methods"][m]["mean_drop"])
        summary[backend] = {
            "largest_drop": best,
            "attribution_beats_attention": result["methods"]["integrated_gradients"][
                "mean_drop"
            ]
            > result["methods"]["attention"]["mean_drop"],
        }
    table = "\n\n".join(tables)
    print(table)
    settings = {
        "model": args.model,
        "dataset": args.dataset,
        "sources": 20 if args.quick else args.sources,
    }
    path = harness.write_results(NAME, args, settings, backends, table, summary)
    harness.log(f"wrote {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
