"""The models the app offers: loading, labels, domains, examples, the default.

A model is a folder holding `model.keras`, `spm.model` and optionally
`metrics.json` (its card: languages, evaluation, `domain`, `examples`) and
`model_card.md`.
"""

import logging
import pathlib

from keras_mha import Translator

logger = logging.getLogger("explorer")

# Compiled programs a model keeps at most. What the app asks for needs 36 at
# most: greedy and the five beam sizes of `service.BEAM_SIZES` (6 searches,
# all with the same recorded `top_k`) x 3 source-length buckets (16, 32, 64
# pieces; one row per request), scoring x 3 source x 3 target buckets, and
# the layer predictions' teacher-forced pass x 9 likewise; attribution
# compiles apart (`Translator.attribute`, one program per pair length).
MAX_PROGRAMS = 48

LANGUAGES = {"de": "German", "en": "English", "es": "Spanish", "fr": "French"}
CAPTIONS = "image captions"
EVERYDAY = "everyday sentences"
# Domains of the datasets the training code knows, for cards without one.
DATASET_DOMAINS = {
    "spa-eng": EVERYDAY,
    "deu-eng": EVERYDAY,
    "fra-eng": EVERYDAY,
    "multi30k-en-de": CAPTIONS,
}
EXAMPLES = {
    EVERYDAY: [
        "Where is the train station?",
        "I would like a cup of coffee, please.",
        "She has lived in this city for ten years.",
        "We didn't know that the museum was closed on Mondays.",
        "Can you help me carry these boxes upstairs?",
    ],
    CAPTIONS: [
        "A man in a red shirt is riding a bicycle down the street.",
        "Two dogs are running through the snow.",
        "A little girl is climbing the stairs to her playhouse.",
        "A group of people are standing in front of a building.",
    ],
}


def load_models(models_dir):
    """Loads each sub-folder of `models_dir` that holds a `model.keras`.

    Returns:
        `({name: Translator}, {name: reason})`: the loaded models and the
        folders that failed, so that one broken folder never stops the app.
        The reason is the kind of error only (the page shows it); the
        details, which may name server paths, go to the log.
    """
    models_dir = pathlib.Path(models_dir)
    folders = (
        sorted(p for p in models_dir.iterdir() if (p / "model.keras").is_file())
        if models_dir.is_dir()
        else []
    )
    translators, failures = {}, {}
    for folder in folders:
        try:
            translators[folder.name] = Translator.load(folder, MAX_PROGRAMS)
        except Exception as error:  # Any broken file: report it, keep going.
            logger.exception("Could not load the model in %s", folder)
            failures[folder.name] = (
                f"could not be loaded ({type(error).__name__}; see the server log)"
            )
    return translators, failures


def read_model_cards(models_dir, names):
    """`{name: markdown}` of the `model_card.md` files that exist."""
    cards = {}
    for name in names:
        path = pathlib.Path(models_dir) / name / "model_card.md"
        if path.is_file():
            cards[name] = path.read_text(encoding="utf-8")
    return cards


def languages(translator):
    """`(source, target)` language names, or `None` without a card."""
    codes = translator.card.get("languages") or []
    if len(codes) != 2:
        return None
    return tuple(LANGUAGES.get(code, code) for code in codes)


def domain(translator):
    """What the model was trained on, e.g. "everyday sentences" ("" unknown)."""
    card = translator.card
    if card.get("domain"):
        return str(card["domain"])
    dataset = str(card.get("dataset") or "")
    if dataset in DATASET_DOMAINS:
        return DATASET_DOMAINS[dataset]
    return CAPTIONS if "multi30k" in dataset else ""


def examples(translator):
    """Example sentences from the model's domain (the card's own first)."""
    own = [str(e) for e in translator.card.get("examples") or [] if str(e).strip()]
    return own or list(EXAMPLES.get(domain(translator), EXAMPLES[EVERYDAY]))


def bleu(translator):
    """The card's headline BLEU: the test split's, with the widest beam."""
    evaluations = sorted(
        (translator.card.get("evaluation") or {}).values(),
        key=lambda e: (e.get("split") == "test", e.get("beam_size", 1)),
    )
    if evaluations and "bleu" in evaluations[-1]:
        return float(evaluations[-1]["bleu"])
    return None


def model_label(translator):
    """Dropdown label, e.g. "English → Spanish (en-es, BLEU 35.1)"."""
    details = [translator.name]
    if bleu(translator) is not None:
        details.append(f"BLEU {bleu(translator):.1f}")
    pair = languages(translator)
    if pair:
        return f"{pair[0]} → {pair[1]} ({', '.join(details)})"
    return f"{translator.name} ({', '.join(details[1:]) or 'no card'})"


def default_model(translators):
    """The model the page opens with: one trained on everyday sentences
    (the best-scoring of them), a caption model only if nothing else."""

    def rank(name):
        kind = domain(translators[name])
        score = bleu(translators[name])
        return (kind != EVERYDAY, kind == CAPTIONS, -(score or 0.0), name)

    return min(translators, key=rank) if translators else None


def domain_markdown(translator):
    """The few lines shown beside the model selector."""
    pair = languages(translator)
    lines = [f"**{pair[0]} → {pair[1]}**" if pair else f"**{translator.name}**"]
    kind = domain(translator)
    if kind:
        lines.append(f"Trained on {kind}: it translates best what looks like them.")
    if kind == CAPTIONS:
        lines.append("For everyday sentences, pick a model trained on those.")
    return "  \n".join(lines)
