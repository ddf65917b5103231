"""Evaluate a model folder: `python -m training.evaluate saved_models/en-es`.

Prints sacreBLEU (with its signature) and chrF on detokenized, cased text;
spa-eng uses every reference of a source (multi-reference BLEU). For
Multi30k it also prints the figure papers report: BLEU on lowercased text
tokenized with the Moses tokenizer (sacremoses, `escape=False`), scored with
sacreBLEU's `tokenize="none"` — the same n-gram counts as `multi-bleu.perl`
on lowercased, tokenized files.

With `--update-card` the figures go into the folder's `metrics.json` and
`model_card.md` is written again.
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
):
    """Translates a split and scores it; returns a dict of figures."""
    translator = translator or Translator.load(model_dir)
    dataset = translator.card["dataset"]
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


def write_model_card(model_dir):
    """Writes `model_card.md` from `metrics.json`."""
    model_dir = pathlib.Path(model_dir)
    m = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    c = m["config"]
    source, target = m["languages"]
    lines = [
        f"# {model_dir.name}: {source} → {target} Transformer ({m['dataset']})",
        "",
        f"A {c['num_layers']}+{c['num_layers']}-layer encoder–decoder "
        f"Transformer (d_model {c['hidden_dim']}, {c['num_heads']} heads, "
        f"feed-forward {c['intermediate_dim']}, "
        f"{'pre' if c['normalize_first'] else 'post'}-LN, shared and tied "
        f"embeddings) built from `keras_mha` layers; {m['parameters']:,} "
        f"parameters; joint SentencePiece BPE vocabulary of "
        f"{m['vocabulary_size']} pieces (`spm.model`, `spm.vocab.txt`).",
        "",
        "## Training",
        "",
        f"- Command: `{m['command']}`",
        f"- Data: `{m['dataset']}` train split, {m['train_pairs']:,} pairs "
        f"({m['skipped_lines']} malformed lines skipped); validation "
        f"{m['valid_pairs']:,} pairs. See `../shared/data/README.md`.",
        f"- {m['epochs_trained']} epochs, {m['steps']:,} steps, "
        f"{m['train_seconds'] / 60:.0f} min of training on "
        + (f"{m['accelerator']} (host: " if m.get("accelerator") else "")
        + f"{m['cpu_count']} CPU cores ({m['cpu']})"
        + (")" if m.get("accelerator") else "")
        + f", Keras {m['keras_version']} "
        f"on the {m['backend']} backend"
        + (f"; {m['hardware_note']}" if m.get("hardware_note") else "")
        + ".",
        f"- Adam (0.9, 0.98), peak learning rate {c['learning_rate']} after "
        f"{c['warmup_steps']} warmup steps then inverse square root; label "
        f"smoothing {c['label_smoothing']}; dropout {c['dropout']}; "
        f"~{c['batch_tokens']} tokens per batch, length-bucketed; seed "
        f"{c['seed']}.",
        f"- Final weights: `{m['final_weights']}` (validation loss {m['valid_loss']})",
        "",
        "| epoch | train loss | val loss | val accuracy |",
        "|---|---|---|---|",
    ]
    for h in m.get("history", []):
        lines.append(
            f"| {h['epoch']} | {h.get('loss', float('nan')):.3f} | "
            f"{h.get('val_loss', float('nan')):.3f} | "
            f"{h.get('val_masked_accuracy', float('nan')):.3f} |"
        )
    lines += ["", "## Quality", ""]
    evaluations = m.get("evaluation", {})
    if not evaluations:
        lines.append("Not evaluated yet: run `python -m training.evaluate`.")
    else:
        lines += [
            "| split | decoding | sources | BLEU | chrF | BLEU tok+lc | command |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, e in sorted(evaluations.items()):
            decoding = (
                "greedy"
                if e["beam_size"] == 1
                else f"beam {e['beam_size']}, α={e['length_penalty']}"
            )
            lines.append(
                f"| {e['split']} | {decoding} | {e['sources']} "
                f"({e['references']} refs) | {e['bleu']} | {e['chrf']} | "
                f"{e.get('bleu_tok_lc', '–')} | `{e.get('command', '')}` |"
            )
        any_eval = next(iter(evaluations.values()))
        lines += [
            "",
            f"sacreBLEU signature: `{any_eval['bleu_signature']}`; chrF: "
            f"`{any_eval['chrf_signature']}`.",
        ]
        if "bleu_tok_lc_signature" in any_eval:
            lines.append(
                "BLEU tok+lc: hypotheses and references lowercased and "
                "tokenized with sacremoses' Moses tokenizer, scored with "
                f"`{any_eval['bleu_tok_lc_signature']}` (as papers on "
                "Multi30k report)."
            )
    if m.get("notes"):
        lines += ["", "## Notes", "", m["notes"]]
    lines += [
        "",
        "## Limitations",
        "",
        "Trained on short, simple sentences (Tatoeba phrases or Multi30k image "
        "captions); expect errors on long, technical or informal text. "
        "Attention maps show where each head looked, not why the model chose "
        "a word.",
        "",
    ]
    (model_dir / "model_card.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--split", default="test", choices=data_lib.SPLITS)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--data-dir")
    parser.add_argument("--max-sources", type=int)
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args(argv)
    result = evaluate(
        args.model_dir,
        args.split,
        args.beam_size,
        args.length_penalty,
        args.data_dir,
        args.max_sources,
    )
    result["command"] = (
        f"python -m training.evaluate {args.model_dir} --split {args.split} "
        f"--beam-size {args.beam_size}"
    )
    print(
        f"{args.model_dir} {args.split}: BLEU {result['bleu']}  chrF "
        f"{result['chrf']}"
        + (
            f"  BLEU(tok, lc) {result['bleu_tok_lc']}"
            if "bleu_tok_lc" in result
            else ""
        )
    )
    print(f"  {result['bleu_signature']}")
    print(f"  {result['sources']} sources in {result['translate_seconds']} s")
    if args.update_card:
        metrics_path = pathlib.Path(args.model_dir) / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        key = f"{args.split}_beam{args.beam_size}"
        if args.max_sources:
            key += f"_first{args.max_sources}"
        result["machine"] = f"{platform.machine()}, {platform.node()}"
        metrics.setdefault("evaluation", {})[key] = result
        metrics_path.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
        write_model_card(args.model_dir)
    return result


if __name__ == "__main__":
    main()
