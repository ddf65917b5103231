"""Word alignment from attention against human gold links: AER, precision
and recall of every method.

    python -m benchmarks.bench_alignment                 # en-es and en-fr gold
    python -m benchmarks.bench_alignment --quick         # 20 pairs each

Each gold pair (`../shared/data/align/*.jsonl`: English words, translation
words, sure links; see its README) is teacher-forced through the shipped
model of its language pair (`Translator.score`), and every method of
`keras_mha.alignment` (`method_names`: averaged, shifted, each layer, each
head, each with the argmax, intersection, union and threshold rules, and
with the diagonal prior before them) turns the recorded cross-attention
into word links; so do gradient x input (`attribution:...`) and word
deletion (`deletion...`: the drop of each piece's log-probability when one
source word is left out, `keras_mha.deletion`) with the same rules. AER
counts sure links as possible (the gold sets have no possible links).

Gold words are pre-tokenized; they are joined with spaces into the texts the
model reads, so that the model's words (its pieces grouped at "▁") are the
gold words one for one. A pair is left out only when that does not hold
(a side cut at the model's `max_length`, or words that do not round-trip),
and the left-out pairs are counted in the table and the JSON.

The alignments do not depend on the backend beyond float rounding: one
backend (`--backends jax`) is the default.
"""

import argparse
import json
import pathlib
import shlex
import sys

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_alignment"
# Gold set -> the shipped model of its language pair.
GOLD = {
    "en-es.europarl.jsonl": "en-es",
    "en-fr.hansards.jsonl": "en-fr",
}


def read_gold(path, limit=None):
    """`[(source words, target words, {(i, j)})]` of a gold file."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                links = {tuple(link) for link in item["alignment"]}
                pairs.append((item["src_words"], item["tgt_words"], links))
    return pairs[:limit] if limit else pairs


def measure(
    model_dir,
    gold_path,
    limit=None,
    batch_size=32,
    integrated_gradients=False,
    attribution=True,
):
    """Scores every method on one gold set; returns a dict for the JSON."""
    from keras_mha import Translator, alignment
    from keras_mha.deletion import word_deletion

    translator = Translator.load(model_dir)
    pairs = read_gold(gold_path, limit)
    sources = [" ".join(src) for src, _, _ in pairs]
    targets = [" ".join(tgt) for _, tgt, _ in pairs]
    scored = translator.score(sources, targets, top_k=0, batch_size=batch_size)
    kept, left_out = [], {"truncated": 0, "words differ": 0}
    for (src, tgt, links), translation in zip(pairs, scored):
        if translation.truncated or len(translation.target_tokens) >= (
            translator.model.max_length
        ):
            left_out["truncated"] += 1
        elif (
            alignment.source_words(translation) != src
            or alignment.target_words(translation) != tgt
        ):
            left_out["words differ"] += 1
        else:
            kept.append((translation, links))
    cross = kept[0][0].attention["cross"]
    methods = alignment.method_names(*cross.shape[:2])
    sure = [links for _, links in kept]
    results = {}
    for method in methods:
        predicted = [alignment.word_alignment(t, method) for t, _ in kept]
        scores = alignment.alignment_scores(predicted, sure)
        results[method] = {k: round(100 * v, 1) for k, v in scores.items()}
    # Attribution: gradient x input of every pair (integrated gradients
    # costs `steps` times more and is left to `--integrated-gradients`).
    attributions = {"grad_x_input": []} if attribution else {}
    if integrated_gradients and attribution:
        attributions["integrated_gradients"] = []
    for translation, _ in kept:
        source = " ".join(alignment.source_words(translation))
        for name, found in attributions.items():
            found.append(
                translator.attribute(
                    source, translation.target_tokens, method=name, steps=16
                )
            )
    # Word deletion: every source word left out once (W + 1 teacher-forced
    # passes per pair, batched), the drops read as links.
    if attribution:
        deletions = [
            word_deletion(
                translator,
                " ".join(alignment.source_words(translation)),
                translation.target_tokens,
                batch_size=batch_size,
            )
            for translation, _ in kept
        ]
        results.update(
            per_rule("deletion", alignment.deletion_alignment, deletions, sure)
        )
    for name, found in attributions.items():
        results.update(
            per_rule(
                f"attribution:{name}", alignment.attribution_alignment, found, sure
            )
        )
    # A reference that reads no model: target word j linked to the source
    # word at the same relative position (round(j * S / T)).
    diagonal = [
        {
            (min(len(src) - 1, round(j * len(src) / len(tgt))), j)
            for j in range(len(tgt))
        }
        for src, tgt in (
            (alignment.source_words(t), alignment.target_words(t)) for t, _ in kept
        )
    ]
    baselines = {
        "diagonal (no model)": {
            k: round(100 * v, 1)
            for k, v in alignment.alignment_scores(diagonal, sure).items()
        }
    }
    return {
        "model": pathlib.Path(model_dir).name,
        "gold": gold_path.name,
        "baselines": baselines,
        "pairs": len(pairs),
        "pairs_used": len(kept),
        "left_out": left_out,
        "links": sum(map(len, sure)),
        "methods": results,
    }


def per_rule(name, links_of, items, sure):
    """`{name + rule: {"aer", "precision", "recall"} in %}` for every rule of
    `keras_mha.alignment.RULES`, `links_of(item, rule, threshold, diagonal)`
    giving each item's links."""
    from keras_mha import alignment

    results = {}
    for rule in alignment.RULES:
        links_rule, threshold = alignment.parse_links("x" + rule)
        diagonal = alignment.uses_diagonal_prior("x" + rule)
        predicted = [links_of(i, links_rule, threshold, diagonal) for i in items]
        scores = alignment.alignment_scores(predicted, sure)
        results[name + rule] = {k: round(100 * v, 1) for k, v in scores.items()}
    return results


def attribution_seconds(model_dir, repeats=5):
    """Warm seconds (median of `repeats`) of each attribution method for a
    sentence of 15 source and 15 output pieces."""
    import time

    from keras_mha import Translator

    translator = Translator.load(model_dir)
    words = "the old man gave his granddaughter a red bicycle for her birthday".split()
    source = " ".join(words)
    while len(translator.tokenizer.encode(source)) > 15:
        source = source.rsplit(" ", 1)[0]
    while len(translator.tokenizer.encode(source)) < 15:
        source += " again"
    target = translator.translate(source, return_attention=False).target_tokens
    target = [p for p in target if p != "</s>"][:14]
    result = {"source_pieces": len(translator.tokenizer.encode(source))}
    result["target_pieces"] = len(target) + 1
    for method in ("grad_x_input", "integrated_gradients"):
        translator.attribute(source, target, method=method, steps=16)  # Compile.
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            translator.attribute(source, target, method=method, steps=16)
            times.append(time.perf_counter() - start)
        result[method] = round(float(sorted(times)[len(times) // 2]), 3)
    return result


def worker(args):
    data_dir = pathlib.Path(args.data_dir)
    limit = 20 if args.quick else None
    sets = []
    for gold, model in GOLD.items():
        path = data_dir / gold
        folder = harness.ROOT / "saved_models" / model
        if not path.is_file() or not (folder / "model.keras").is_file():
            harness.log(f"skipped {gold}: no gold file or no model {model}")
            continue
        harness.log(f"{gold} through {model} ...")
        sets.append(
            measure(
                folder,
                path,
                limit,
                integrated_gradients=args.integrated_gradients,
                attribution=not args.attention_only,
            )
        )
    timing = None
    if not args.attention_only:
        timing = attribution_seconds(harness.ROOT / "saved_models" / "en-es")
    harness.finish_worker(args, {"sets": sets, "attribution_seconds": timing})


def update_card(found, command):
    """Writes one set's AER per method into its model's `metrics.json` and
    regenerates the card."""
    from training.model_card import write_model_card

    folder = harness.ROOT / "saved_models" / found["model"]
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["alignment"] = {
        "gold": found["gold"],
        "pairs": found["pairs"],
        "pairs_used": found["pairs_used"],
        "links": found["links"],
        "command": command,
        "aer": {m: r["aer"] for m, r in found["methods"].items()},
        "precision": {m: r["precision"] for m, r in found["methods"].items()},
        "recall": {m: r["recall"] for m, r in found["methods"].items()},
    }
    path.write_text(
        json.dumps(metrics, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    write_model_card(folder)
    harness.log(f"updated {path}")


def summary_of(sets):
    """The best method per set, and the method with the lowest mean AER over
    the sets (the one a default should be)."""
    if not sets:
        return {}
    methods = set.intersection(*(set(s["methods"]) for s in sets))
    mean = {
        m: round(sum(s["methods"][m]["aer"] for s in sets) / len(sets), 2)
        for m in methods
    }
    best = min(mean, key=mean.get)
    return {
        "best_per_set": {
            s["gold"]: min(s["methods"], key=lambda m: s["methods"][m]["aer"])
            for s in sets
        },
        "best_mean": best,
        "best_mean_aer": mean[best],
        "mean_aer": dict(sorted(mean.items(), key=lambda item: item[1])),
    }


def table_of(sets, top=12):
    """Markdown: the `top` methods by mean AER, plus average and shift-att."""
    summary = summary_of(sets)
    order = list(summary["mean_aer"])
    shown = order[:top] + [m for m in ("average", "shift-att") if m not in order[:top]]
    headers = (
        ["method"]
        + [
            f"{s['model']} · {s['gold']} "
            f"({s['pairs_used']}/{s['pairs']} pairs) AER / P / R"
            for s in sets
        ]
        + ["mean AER"]
    )
    rows = []
    for method in shown:
        cells = [method]
        for s in sets:
            r = s["methods"][method]
            cells.append(f"{r['aer']} / {r['precision']} / {r['recall']}")
        cells.append(str(summary["mean_aer"][method]))
        rows.append(cells)
    for name in sets[0].get("baselines", {}):
        cells, total = [name], 0.0
        for s in sets:
            r = s["baselines"][name]
            cells.append(f"{r['aer']} / {r['precision']} / {r['recall']}")
            total += r["aer"]
        rows.append(cells + [str(round(total / len(sets), 2))])
    return harness.markdown_table(headers, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_arguments(parser)
    parser.set_defaults(backends=("jax",))
    parser.add_argument(
        "--update-cards",
        action="store_true",
        help="write each model's measured AER into its metrics.json and card "
        "(the app labels its alignment menu with them and opens the best)",
    )
    parser.add_argument(
        "--integrated-gradients",
        action="store_true",
        help="also align by integrated gradients (16 steps; slow)",
    )
    parser.add_argument(
        "--attention-only",
        action="store_true",
        help="the attention methods only (no attribution and no word deletion: "
        "they run the model again per pair and take far longer)",
    )
    parser.add_argument(
        "--data-dir",
        default=str(harness.ROOT.parent / "shared" / "data" / "align"),
        help="folder of the gold files (default: ../shared/data/align)",
    )
    args = parser.parse_args()
    if args.backend_worker:
        return worker(args)
    backends = harness.run_workers(__file__, args.backends)
    tables, summary = [], {}
    for backend, result in backends.items():
        if "error" in result or not result.get("sets"):
            continue
        table = table_of(result["sets"])
        tables.append(f"{backend}:\n\n{table}")
        summary[backend] = summary_of(result["sets"])
        for s in result["sets"]:
            summary[backend][f"left_out {s['gold']}"] = s["left_out"]
        timing = result.get("attribution_seconds")
        if timing:
            summary[backend]["attribution_seconds"] = timing
            tables.append(
                f"{backend}: attribution of {timing['source_pieces']} source and "
                f"{timing['target_pieces']} output pieces (en-es, warm, median): "
                f"gradient x input {timing['grad_x_input']} s (target 0.3), "
                f"integrated gradients, 16 steps, {timing['integrated_gradients']} s "
                "(target 1.5)"
            )
    table = "\n\n".join(tables)
    print(table)
    if args.update_cards and tables:
        first = next(r for r in backends.values() if "error" not in r)
        for found in first["sets"]:
            update_card(found, shlex.join(["python", "-m", f"benchmarks.{NAME}"]))
    settings = {"data_dir": "../shared/data/align", "gold": GOLD, "quick": args.quick}
    path = harness.write_results(NAME, args, settings, backends, table, summary)
    harness.log(f"wrote {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
