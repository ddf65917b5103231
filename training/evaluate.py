"""Evaluate a model folder: `python -m training.evaluate saved_models/en-es`.

Prints sacreBLEU (with its signature) and chrF on detokenized, cased text;
spa-eng uses every reference of a source (multi-reference BLEU). For
Multi30k it also prints the figure papers report: BLEU on lowercased text
tokenized with the Moses tokenizer (sacremoses, `escape=False`), scored with
sacreBLEU's `tokenize="none"` — the same n-gram counts as `multi-bleu.perl`
on lowercased, tokenized files.

Every test set of the model's language pair is scored (Tatoeba and, where
the language has it, Multi30k), whatever the model was trained on, so that a
card shows how it does in and out of its domain; `--dataset` picks others.
Each is also scored per source length (`LENGTH_BUCKETS`, in words), and the
share of outputs that repeat a word trigram (a symptom of a decoder stuck in
a loop) is counted.

With `--update-card` the figures go into the folder's `metrics.json` and
`model_card.md` is written again (`training.model_card`).
"""

import argparse
import json
import pathlib
import platform
import time

import keras
import sacrebleu
from sacremoses import MosesTokenizer

from keras_mha.translator import Translator
from training import data as data_lib
from training.model_card import write_model_card

# Source-length buckets, in whitespace-separated words: (label, min, max).
LENGTH_BUCKETS = (("≤ 6", 0, 6), ("7–10", 7, 10), ("≥ 11", 11, None))


def evaluation_datasets(dataset):
    """Every corpus with the language pair of `dataset`, `dataset` first."""
    languages = data_lib.get_dataset_info(dataset).languages
    others = [
        name
        for name, info in data_lib.DATASETS.items()
        if info.languages == languages and name != dataset
    ]
    return [dataset, *others]


def repeats_trigram(text):
    """Whether `text` holds one word trigram twice (case-insensitive)."""
    words = text.lower().split()
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) < len(trigrams)


def length_bucket(source):
    """The `LENGTH_BUCKETS` label of a source sentence."""
    words = len(source.split())
    for label, low, high in LENGTH_BUCKETS:
        if words >= low and (high is None or words <= high):
            return label
    raise AssertionError(words)


def scores_by_length(sources, hypotheses, references, target_language):
    """`score` of each `LENGTH_BUCKETS` bucket, with its number of sources."""
    result = {}
    for label, _, _ in LENGTH_BUCKETS:
        rows = [i for i, source in enumerate(sources) if length_bucket(source) == label]
        if not rows:
            continue
        bucket = score(
            [hypotheses[i] for i in rows],
            [references[i] for i in rows],
            target_language,
        )
        result[label] = {
            "sources": len(rows),
            "bleu": bucket["bleu"],
            "chrf": bucket["chrf"],
        }
    return result


def references_by_source(dataset, split, data_dir=None, max_sources=None):
    """Sources and, per source, all of its references."""
    pairs = data_lib.load_pairs(dataset, split, data_dir)
    sources, references = data_lib.group_references(pairs)
    if max_sources:
        sources, references = sources[:max_sources], references[:max_sources]
    return sources, references


def reference_streams(references):
    """sacreBLEU's layout: one stream per reference slot, `None` where a
    source has fewer references than the most."""
    width = max(len(r) for r in references)
    return [[r[i] if i < len(r) else None for r in references] for i in range(width)]


def score(hypotheses, references, target_language, tokenized_lowercase=False):
    """BLEU and chrF of detokenized hypotheses against reference lists.

    Returns a dict with `bleu`, `chrf` and their sacreBLEU signatures, and
    with `tokenized_lowercase` also `bleu_tok_lc` (Moses-tokenized,
    lowercased).
    """
    streams = reference_streams(references)
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(hypotheses, streams)
    chrf_score = chrf.corpus_score(hypotheses, streams)
    result = {
        "bleu": round(bleu_score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf": round(chrf_score.score, 2),
        "chrf_signature": str(chrf.get_signature()),
    }
    if tokenized_lowercase:
        moses = MosesTokenizer(lang=target_language)

        def tok(text):
            if text is None:
                return None
            return moses.tokenize(text.lower(), escape=False, return_str=True)

        tok_bleu = sacrebleu.metrics.BLEU(tokenize="none", force=True)
        tok_score = tok_bleu.corpus_score(
            [tok(h) for h in hypotheses], [[tok(r) for r in s] for s in streams]
        )
        result["bleu_tok_lc"] = round(tok_score.score, 2)
        result["bleu_tok_lc_signature"] = str(tok_bleu.get_signature())
    return result


def evaluate(
    model_dir,
    split="test",
    beam_size=1,
    length_penalty=0.6,
    data_dir=None,
    max_sources=None,
    translator=None,
    dataset=None,
):
    """Translates a split of `dataset` (default: the model's own) and scores
    it; returns a dict of figures."""
    translator = translator or Translator.load(model_dir)
    dataset = dataset or translator.card["dataset"]
    target_language = data_lib.get_dataset_info(dataset).target_language
    sources, references = references_by_source(dataset, split, data_dir, max_sources)
    start = time.time()
    translations = translator.translate(
        sources,
        beam_size=beam_size,
        length_penalty=length_penalty,
        return_attention=False,
    )
    seconds = time.time() - start
    hypotheses = [t.text for t in translations]
    result = score(
        hypotheses,
        references,
        target_language,
        tokenized_lowercase=dataset.startswith("multi30k"),
    )
    result.update(
        dataset=dataset,
        by_length=scores_by_length(sources, hypotheses, references, target_language),
        repeated_trigram_percent=round(
            100 * sum(map(repeats_trigram, hypotheses)) / max(len(hypotheses), 1), 2
        ),
        split=split,
        sources=len(sources),
        references=sum(len(r) for r in references),
        beam_size=beam_size,
        length_penalty=length_penalty if beam_size > 1 else None,
        translate_seconds=round(seconds, 1),
        backend=keras.backend.backend(),
        examples=[
            {"source": s, "hypothesis": h, "references": r}
            for s, h, r in list(zip(sources, hypotheses, references))[:5]
        ],
    )
    return result


def evaluation_key(result, own_dataset, max_sources=None):
    """The key of `result` in `metrics.json["evaluation"]`: `test_beam1` on
    the model's own dataset, `multi30k-en-de:test_beam1` on another."""
    key = f"{result['split']}_beam{result['beam_size']}"
    if max_sources:
        key += f"_first{max_sources}"
    if result["dataset"] != own_dataset:
        key = f"{result['dataset']}:{key}"
    return key


def report(result):
    """The printed lines of one evaluation: totals, then per length."""
    lines = [
        f"{result['dataset']} {result['split']}: BLEU {result['bleu']}  chrF "
        f"{result['chrf']}"
        + (
            f"  BLEU(tok, lc) {result['bleu_tok_lc']}"
            if "bleu_tok_lc" in result
            else ""
        )
        + f"  repeated trigram {result['repeated_trigram_percent']} %",
        f"  {result['bleu_signature']}",
        f"  {result['sources']} sources in {result['translate_seconds']} s",
        "  | source words | sources | BLEU | chrF |",
        "  |---|---|---|---|",
    ]
    for label, bucket in result["by_length"].items():
        lines.append(
            f"  | {label} | {bucket['sources']} | {bucket['bleu']} | {bucket['chrf']} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--split", default="test", choices=data_lib.SPLITS)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument(
        "--dataset",
        action="append",
        choices=sorted(data_lib.DATASETS),
        help="a test set (repeatable); default: every corpus of the pair",
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--max-sources", type=int)
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args(argv)
    translator = Translator.load(args.model_dir)
    own = translator.card["dataset"]
    datasets = args.dataset or evaluation_datasets(own)
    data_dir = data_lib.resolve_data_dir(args.data_dir, dataset=own)
    results = []
    for dataset in datasets:
        info = data_lib.get_dataset_info(dataset)
        files = [data_dir / info.subdir / name for name in info.files(args.split)]
        if dataset != own and not all(path.exists() for path in files):
            print(f"{dataset} {args.split}: not in {data_dir}, skipped")
            continue
        result = evaluate(
            args.model_dir,
            args.split,
            args.beam_size,
            args.length_penalty,
            data_dir,
            args.max_sources,
            translator=translator,
            dataset=dataset,
        )
        result["command"] = (
            f"KERAS_BACKEND={keras.backend.backend()} python -m training.evaluate "
            f"{args.model_dir} --split {args.split} --beam-size {args.beam_size}"
        )
        print("\n".join(report(result)))
        results.append(result)
    if args.update_card:
        metrics_path = pathlib.Path(args.model_dir) / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        for result in results:
            result["machine"] = platform.machine()
            key = evaluation_key(result, own, args.max_sources)
            metrics.setdefault("evaluation", {})[key] = result
        metrics_path.write_text(
            json.dumps(metrics, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        write_model_card(args.model_dir)


if __name__ == "__main__":
    main()
