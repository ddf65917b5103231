"""Model cards in the Hugging Face Hub format, written from `metrics.json`.

    python -m training.model_card saved_models/en-es             # the card
    python -m training.model_card saved_models/en-es --portable  # + metrics

`model_card(metrics, name)` is the one function that turns a model folder's
`metrics.json` into its `model_card.md`: YAML front matter (library, task,
languages, license, datasets, metrics and a `model-index` with BLEU and chrF
of every evaluation), then the data, the domain, examples, the recipe, the
command, hardware and training time, results and limitations. Facts about
the corpora (license, homepage, domain) come from `training.data.DATASETS`.

`make_portable(metrics, name)` rewrites the paths a run recorded
(`/home/me/runs/x`) to their repository-relative form (`runs/NAME`), so that
no card shows a machine's layout.
"""

import argparse
import copy
import json
import pathlib
import shlex

from training import data as data_lib
from training import recipes as recipes_lib

LANGUAGE_NAMES = {
    "en": "English",
    "es": "Spanish",
    "de": "German",
    "fr": "French",
    "cs": "Czech",
}
# What each domain of `training.data.DATASETS` holds, and what that means
# for text from elsewhere.
DOMAIN_NOTES = {
    "everyday sentences": (
        "Short, everyday sentences and phrases of the kind language learners "
        "practise: questions, requests, statements about people, places, "
        "time and feelings, mostly under 15 words.",
        "Trained on short everyday sentences: expect errors on long sentences, "
        "technical or specialised vocabulary, names it has not seen, informal "
        "or noisy text, and on anything that needs more context than one "
        "sentence.",
    ),
    "image captions": (
        "One-sentence descriptions of photographs (Flickr30k): people, "
        "animals and everyday scenes, what they wear and what they do.",
        "Trained on image captions only: outside descriptions of scenes "
        "(questions, dialogue, first person, abstract or technical text) "
        "translations degrade quickly, and the vocabulary is that of the "
        "captions.",
    ),
    "everyday sentences and image captions": (
        "Short everyday sentences and phrases (Tatoeba) and one-sentence "
        "descriptions of photographs (Multi30k): people, animals and scenes, "
        "what they wear and what they do.",
        "Trained on everyday sentences and image captions: expect errors on "
        "long sentences of other kinds, technical or specialised vocabulary, "
        "names it has not seen, informal or noisy text, and on anything that "
        "needs more context than one sentence.",
    ),
}
# Evaluation facts shown in the results table, in this order.
RESULT_COLUMNS = (
    ("bleu", "BLEU"),
    ("chrf", "chrF"),
    ("bleu_tok_lc", "BLEU tok+lc"),
)


# ------------------------------------------------------------------ YAML
def front_matter_yaml(meta):
    """The card's YAML front matter, written by `huggingface_hub` (its
    `ModelCardData` and `EvalResult` write the `model-index` as the Hub
    parses it) from the dict of `card_metadata`."""
    from huggingface_hub import EvalResult, ModelCardData

    meta = dict(meta)
    index = meta.pop("model-index", [])
    results = []
    for model in index:
        for result in model["results"]:
            for metric in result["metrics"]:
                results.append(
                    EvalResult(
                        task_type=result["task"]["type"],
                        task_name=result["task"]["name"],
                        dataset_type=result["dataset"]["type"],
                        dataset_name=result["dataset"]["name"],
                        dataset_split=result["dataset"]["split"],
                        metric_type=metric["type"],
                        metric_value=metric["value"],
                        metric_name=metric["name"],
                    )
                )
    data = ModelCardData(
        model_name=index[0]["name"] if index else None,
        eval_results=results or None,
        **meta,
    )
    return data.to_yaml()


# ------------------------------------------------------------- the card
def _decoding(evaluation):
    if evaluation["beam_size"] == 1:
        return "greedy"
    return f"beam {evaluation['beam_size']}"


def _dataset(evaluation, metrics):
    """The corpus an evaluation scored (older ones: the model's own)."""
    return evaluation.get("dataset", metrics["dataset"])


def _sorted_evaluations(metrics):
    """Evaluations on the model's own corpus first, then the other test sets;
    test before valid; greedy before beam."""
    order = {"test": 0, "valid": 1}
    return sorted(
        metrics.get("evaluation", {}).values(),
        key=lambda e: (
            _dataset(e, metrics) != metrics["dataset"],
            _dataset(e, metrics),
            order.get(e["split"], 2),
            e["beam_size"],
            e["sources"],
        ),
    )


def _pair_name(metrics):
    source, target = metrics["languages"]
    return LANGUAGE_NAMES.get(source, source), LANGUAGE_NAMES.get(target, target)


def _corpora(metrics):
    """The corpora a model was trained on: its mix, else its dataset."""
    mix = metrics.get("config", {}).get("mix") or [{"dataset": metrics["dataset"]}]
    return list(dict.fromkeys(part["dataset"] for part in mix))


def _data_section(metrics):
    source, target = _pair_name(metrics)
    mix = metrics.get("train_mix")
    lines = []
    for dataset in _corpora(metrics):
        info = data_lib.get_dataset_info(dataset)
        lines += [
            f"{info.corpus}, {source}–{target} (`{dataset}`, {info.homepage}): "
            f"{info.domain}. {info.split_note}",
            "",
            f"License of the data: {info.license_note}",
            "",
        ]
    if mix:
        lines += [
            "The training set mixes them as the recipe's `mix` says (each "
            "corpus' pairs after its length filter, repeated):",
            "",
            "| part | pairs read | kept | repeat | training pairs |",
            "|---|---|---|---|---|",
        ]
        for part_name, stats in mix.items():
            repeat = stats.get("repeat", stats["pairs"] // max(stats["kept"], 1))
            lines.append(
                f"| `{part_name}` | {stats['read']:,} | {stats['kept']:,} | "
                f"{repeat} | {stats['pairs']:,} |"
            )
        lines.append("")
    lines.append(
        f"In all {metrics['train_pairs']:,} training and "
        f"{metrics['valid_pairs']:,} validation pairs."
    )
    return lines


def card_metadata(metrics, name):
    """The card's YAML front matter, as a dict."""
    info = data_lib.get_dataset_info(metrics["dataset"])
    source, target = _pair_name(metrics)
    meta = {
        "library_name": "keras",
        "pipeline_tag": "translation",
        "language": list(metrics["languages"]),
        "license": info.license,
    }
    if info.license == "other":
        meta["license_name"] = info.name.split("-")[0]
        meta["license_link"] = info.homepage
    hub = [data_lib.get_dataset_info(d).hub_dataset for d in _corpora(metrics)]
    meta["datasets"] = [h for h in hub if h]
    meta["metrics"] = ["bleu", "chrf"]
    meta["tags"] = ["translation", "transformer", "keras", "attention"]
    results = []
    datasets = dict.fromkeys(_dataset(e, metrics) for e in _sorted_evaluations(metrics))
    for dataset, split in ((d, s) for d in datasets for s in ("test", "valid")):
        info = data_lib.get_dataset_info(dataset)
        evaluations = [
            e
            for e in _sorted_evaluations(metrics)
            if e["split"] == split and _dataset(e, metrics) == dataset
        ]
        if not evaluations:
            continue
        scores = []
        for e in evaluations:
            for key, label in RESULT_COLUMNS:
                if key in e:
                    metric = "chrf" if key == "chrf" else "bleu"
                    scores.append(
                        {
                            "type": metric,
                            "value": e[key],
                            "name": f"{label} ({_decoding(e)})",
                        }
                    )
        results.append(
            {
                "task": {
                    "type": "translation",
                    "name": f"Translation {source} to {target}",
                },
                "dataset": {
                    "type": info.hub_dataset or info.name,
                    "name": f"{info.corpus} {info.name}",
                    "split": info.splits[split],
                },
                "metrics": scores,
            }
        )
    if results:
        meta["model-index"] = [{"name": name, "results": results}]
    return meta


def _results_section(metrics):
    evaluations = _sorted_evaluations(metrics)
    if not evaluations:
        return ["Not evaluated yet: run `python -m training.evaluate`."]
    columns = [c for c in RESULT_COLUMNS if any(c[0] in e for e in evaluations)]
    lines = [
        "| test set | split | decoding | sources (references) | "
        + " | ".join(label for _, label in columns)
        + " | repeated trigram % | seconds |",
        "|---" * (len(columns) + 6) + "|",
    ]
    for e in evaluations:
        decoding = _decoding(e)
        if e.get("length_penalty") is not None:
            decoding += f", α={e['length_penalty']}"
        cells = [str(e.get(key, "–")) for key, _ in columns]
        lines.append(
            f"| `{_dataset(e, metrics)}` | {e['split']} | {decoding} | "
            f"{e['sources']:,} ({e['references']:,}) "
            f"| {' | '.join(cells)} | {e.get('repeated_trigram_percent', '–')} "
            f"| {e['translate_seconds']} |"
        )
    with_lengths = [e for e in evaluations if e.get("by_length")]
    if with_lengths:
        labels = list(dict.fromkeys(k for e in with_lengths for k in e["by_length"]))
        lines += [
            "",
            "BLEU (chrF) by source length in words:",
            "",
            "| test set | split | decoding | "
            + " | ".join(f"{label} words" for label in labels)
            + " |",
            "|---" * (len(labels) + 3) + "|",
        ]
        for e in with_lengths:
            cells = []
            for label in labels:
                bucket = e["by_length"].get(label)
                cells.append(
                    f"{bucket['bleu']} ({bucket['chrf']}), "
                    f"{bucket['sources']:,} sources"
                    if bucket
                    else "–"
                )
            lines.append(
                f"| `{_dataset(e, metrics)}` | {e['split']} | {_decoding(e)} | "
                + " | ".join(cells)
                + " |"
            )
    first = evaluations[0]
    references = (
        "every reference of a source counting (multi-reference BLEU)"
        if first["bleu_signature"].startswith("nrefs:var")
        else "one reference per source"
    )
    lines += [
        "",
        f"sacreBLEU on detokenized, cased text, {references}: "
        f"`{first['bleu_signature']}`; chrF `{first['chrf_signature']}`. "
        "Seconds: the time to translate the whole split "
        f"({first['backend']} backend, the hardware above).",
    ]
    if "bleu_tok_lc_signature" in first:
        lines += [
            "BLEU tok+lc: hypotheses and references lowercased and tokenized "
            "with sacremoses' Moses tokenizer, then scored with "
            f"`{first['bleu_tok_lc_signature']}`, the form papers report on "
            "Multi30k.",
        ]
    commands = [_with_backend(e["command"], e) for e in evaluations if e.get("command")]
    if commands:
        lines += ["", "```bash", *commands, "```"]
    return lines + _alignment_section(metrics)


def _alignment_section(metrics):
    """The measured alignment error of the best methods, if measured."""
    measured = metrics.get("alignment")
    if not measured:
        return []
    order = sorted(measured["aer"], key=measured["aer"].get)
    shown = order[:5] + [m for m in ("average", "shift-att") if m not in order[:5]]
    lines = [
        "",
        "### Word alignment",
        "",
        f"Cross-attention read as word alignments, against the human gold "
        f"links of `{measured['gold']}` ({measured['pairs_used']} of "
        f"{measured['pairs']} pairs, {measured['links']:,} sure links, "
        "teacher-forced): alignment error rate, precision and recall in %, "
        "lower AER is better. The best five methods and the two classic ones:",
        "",
        "| method | AER | precision | recall |",
        "|---|---|---|---|",
    ]
    for method in shown:
        if method in measured["aer"]:
            lines.append(
                f"| `{method}` | {measured['aer'][method]} | "
                f"{measured['precision'][method]} | {measured['recall'][method]} |"
            )
    lines += ["", "```bash", measured["command"], "```"]
    return lines


def _with_backend(command, evaluation):
    """`command` with the `KERAS_BACKEND` it ran on spelled out."""
    if "KERAS_BACKEND=" in command or not evaluation.get("backend"):
        return command
    return f"KERAS_BACKEND={evaluation['backend']} {command}"


def _examples_section(metrics):
    lines = []
    if metrics.get("examples"):
        lines += [
            "Sentences of the domain to try:",
            "",
            *[f"- {text}" for text in metrics["examples"]],
        ]
    with_examples = [e for e in _sorted_evaluations(metrics) if e.get("examples")]
    test = [e for e in with_examples if e["split"] == "test"] or with_examples
    if test:
        e = max(test, key=lambda e: e["beam_size"])
        lines += [
            "",
            f"The first sources of the {e['split']} split, translated "
            f"({_decoding(e)}):",
            "",
            "| source | translation | reference |",
            "|---|---|---|",
        ]
        for example in e["examples"][:3]:
            reference = example["references"][0]
            lines.append(
                f"| {example['source']} | {example['hypothesis']} | {reference} |"
            )
    return lines


def _recipe_section(metrics):
    c = metrics["config"]
    recipe = c.get("recipe")
    lines = []
    if recipe:
        lines += [f"Recipe `training/recipes/{recipe}.toml`:", ""]
    activation_dropout = c.get("activation_dropout")
    feedforward_dropout = (
        "" if activation_dropout is None else f" (feed-forward {activation_dropout})"
    )
    lines += [
        "| setting | value |",
        "|---|---|",
        f"| layers | {c['num_layers']} encoder + {c['num_layers']} decoder, "
        f"{'pre' if c['normalize_first'] else 'post'}-LN |",
        f"| d_model / heads / feed-forward | {c['hidden_dim']} / "
        f"{c['num_heads']} / {c['intermediate_dim']} |",
        f"| vocabulary | {metrics['vocabulary_size']:,} joint SentencePiece BPE "
        "pieces, shared and tied embeddings |",
        f"| dropout | {c['dropout']}"
        + feedforward_dropout
        + f"; label smoothing {c['label_smoothing']} |",
        f"| optimizer | Adam (0.9, 0.98), peak learning rate {c['learning_rate']} "
        f"after {c['warmup_steps']} warmup steps, then inverse square root; "
        "gradient clipping 1.0 |",
        f"| batches | ~{c['batch_tokens']:,} tokens, length-bucketed; "
        f"at most {c['max_length']} tokens a sentence |",
        f"| length | up to {c['epochs']} epochs"
        + (
            f" or {c['time_budget_minutes']:g} minutes of training"
            if c.get("time_budget_minutes")
            else ""
        )
        + f"; seed {c['seed']} |",
        f"| final weights | the lower validation loss of the average of the "
        f"last {c['average_last']} epochs and the best epoch |",
    ]
    return lines


def _training_section(metrics):
    c = metrics["config"]
    minutes = metrics["train_seconds"] / 60
    budget = c.get("time_budget_minutes")
    stopped = budget and metrics["train_seconds"] >= budget * 60 * 0.99
    hardware = (
        f"{metrics['accelerator']} (host: {metrics['cpu_count']} CPU cores)"
        if metrics.get("accelerator")
        else f"{metrics['cpu_count']} CPU cores ({metrics['cpu']}), no accelerator"
    )
    lines = [
        f"- Hardware: {hardware}; Keras {metrics['keras_version']} on the "
        f"{metrics['backend']} backend, `{metrics.get('input_pipeline', 'tf')}` "
        "input pipeline"
        + (f"; {metrics['hardware_note']}" if metrics.get("hardware_note") else "")
        + ".",
        f"- Training time: {minutes:.0f} minutes, {metrics['steps']:,} steps, "
        f"{metrics['epochs_trained']} epochs"
        + (" (the last one ended by the time budget)" if stopped else "")
        + ".",
        f"- Data: {metrics['train_pairs']:,} training pairs "
        f"({metrics['skipped_lines']} malformed lines skipped), "
        f"{metrics['valid_pairs']:,} validation pairs.",
        f"- Final weights: `{metrics['final_weights']}`; validation loss "
        + ", ".join(f"`{k}` {v}" for k, v in metrics["valid_loss"].items())
        + ".",
    ]
    if metrics.get("notes"):
        lines += ["", metrics["notes"]]
    history = metrics.get("history", [])
    if history:
        lines += [
            "",
            "<details><summary>Loss and accuracy per epoch</summary>",
            "",
            "| epoch | train loss | valid loss | valid accuracy |",
            "|---|---|---|---|",
        ]
        for h in history:
            lines.append(
                f"| {h['epoch']} | {h.get('loss', float('nan')):.3f} | "
                f"{h.get('val_loss', float('nan')):.3f} | "
                f"{h.get('val_masked_accuracy', float('nan')):.3f} |"
            )
        lines += ["", "</details>"]
    return lines


def model_card(metrics, name):
    """The text of `model_card.md` for the model folder `name`."""
    info = data_lib.get_dataset_info(metrics["dataset"])
    c = metrics["config"]
    source, target = _pair_name(metrics)
    domain = metrics.get("domain") or info.domain
    domain_text, limitations = DOMAIN_NOTES.get(domain, ("", ""))
    lines = [
        "---",
        front_matter_yaml(card_metadata(metrics, name)).rstrip(),
        "---",
        "",
        f"# {name}: {source} → {target} ({domain})",
        "",
        f"An encoder–decoder Transformer ({c['num_layers']}+{c['num_layers']} "
        f"layers, d_model {c['hidden_dim']}, {metrics['parameters']:,} "
        f"parameters) built from the hand-written `keras_mha` layers and "
        "trained from scratch on "
        + " and ".join(
            f"the `{d}` pairs of {data_lib.get_dataset_info(d).corpus}"
            for d in _corpora(metrics)
        )
        + ". It "
        f"translates {source} {domain} into {target}. The same `model.keras` "
        "loads on the TensorFlow and JAX backends.",
        "",
        "## Use",
        "",
        "```bash",
        f'keras-mha-translate --model saved_models/{name} "{_first_example(metrics)}"',
        "```",
        "",
        "```python",
        "from keras_mha import Translator",
        "",
        f'translator = Translator.load("saved_models/{name}")',
        f'text = "{_first_example(metrics)}"',
        "translation = translator.translate(text, beam_size=4, return_attention=True)",
        "print(translation.text)",
        'translation.attention["cross"]  # (layers, heads, target, source)',
        "```",
        "",
        "## Data",
        "",
        *_data_section(metrics),
        "",
        "## Domain",
        "",
        f"{domain.capitalize()}. {domain_text}",
        "",
        "## Examples",
        "",
        *_examples_section(metrics),
        "",
        "## Recipe",
        "",
        *_recipe_section(metrics),
        "",
        "## Command",
        "",
        "From the repository root (the corpora are found as `training.data` "
        "describes: `--data-dir`, `$KERAS_MHA_DATA_DIR`, or a download):",
        "",
        "```bash",
        metrics.get("command") or "",
        "```",
        "",
        "## Hardware and training time",
        "",
        *_training_section(metrics),
        "",
        "## Results",
        "",
        *_results_section(metrics),
        "",
        "## Limitations",
        "",
        limitations,
        "",
        "One joint vocabulary of "
        f"{metrics['vocabulary_size']:,} pieces covers both languages; words "
        "outside the training data are spelled out of subword pieces and often "
        "mistranslated. The attention maps show where each head looked, not why "
        "the model chose a word.",
        "",
    ]
    return "\n".join(lines)


def _first_example(metrics):
    examples = metrics.get("examples") or ["Hello."]
    return examples[0].replace('"', '\\"')


def write_model_card(model_dir):
    """Writes `model_card.md` of a model folder from its `metrics.json`."""
    model_dir = pathlib.Path(model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    path = model_dir / "model_card.md"
    path.write_text(model_card(metrics, model_dir.name), encoding="utf-8")
    return path


# ------------------------------------------------------------ portable
def _portable_folder(folder, name):
    """An absolute (machine) folder as `runs/NAME`; a relative one as it is."""
    return f"runs/{name}" if pathlib.PurePath(folder).is_absolute() else folder


def _portable_command(command, name, program):
    """`command` without `--data-dir` and with an absolute model folder
    (`--out` of training, the folder argument of evaluation) as `runs/NAME`."""
    words = shlex.split(command)
    portable = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "--data-dir":
            index += 2
            continue
        if word.startswith("--data-dir="):
            index += 1
            continue
        portable.append(word)
        following = words[index + 1] if index + 1 < len(words) else "-"
        # `--out FOLDER` of training, `training.evaluate FOLDER` of evaluation.
        if word in ("--out", program) and not following.startswith("-"):
            portable.append(_portable_folder(following, name))
            index += 1
        index += 1
    return shlex.join(portable)


def make_portable(metrics, name):
    """A copy of `metrics` without machine paths, as a repository ships it.

    An absolute output folder becomes `runs/NAME` (in `config.out`, the
    training command and the evaluation commands; relative ones such as
    `saved_models/NAME` stay as they are), `config.data_dir` and
    `--data-dir` are dropped (the corpora are found as `training.data`
    describes), evaluations keep the machine type only, and the domain and
    the recipe's examples are filled in when missing.
    """
    metrics = copy.deepcopy(metrics)
    config = metrics["config"]
    config["out"] = _portable_folder(config["out"], name)
    config["data_dir"] = None
    if not config.get("recipe") and name in recipes_lib.names():
        config["recipe"] = name
    if metrics.get("command"):
        metrics["command"] = _portable_command(
            metrics["command"], name, "training.train"
        )
    for evaluation in metrics.get("evaluation", {}).values():
        if evaluation.get("command"):
            evaluation["command"] = _portable_command(
                evaluation["command"], name, "training.evaluate"
            )
        if evaluation.get("machine"):
            evaluation["machine"] = evaluation["machine"].split(",")[0]
    metrics.setdefault("domain", data_lib.get_dataset_info(metrics["dataset"]).domain)
    if not metrics.get("examples") and config.get("recipe") in recipes_lib.names():
        metrics["examples"] = list(recipes_lib.load_recipe(config["recipe"]).examples)
    return metrics


def make_metrics_portable(model_dir, name=None):
    """Rewrites `model_dir/metrics.json` with `make_portable`."""
    model_dir = pathlib.Path(model_dir)
    path = model_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics = make_portable(metrics, name or model_dir.name)
    path.write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="+", help="model folders")
    parser.add_argument(
        "--portable",
        action="store_true",
        help="first rewrite metrics.json without machine paths (runs/NAME)",
    )
    args = parser.parse_args(argv)
    for model_dir in args.model_dir:
        if args.portable:
            make_metrics_portable(model_dir)
        print(write_model_card(model_dir))


if __name__ == "__main__":
    main()
