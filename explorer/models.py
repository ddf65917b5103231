"""The models the app offers: loading, labels, domains, examples, the default.

A model is a folder holding `model.keras`, `spm.model` and optionally
`metrics.json` (its card: languages, evaluation, `domain`, `examples`) and
`model_card.md`.
"""

import json
import logging
import pathlib
import threading
import time
import zipfile

from keras_mha import Translator, alignment
from keras_mha import deletion as deletion_lib

logger = logging.getLogger("explorer")

# The beam sizes offered. Every model runs them all in one compiled beam
# program of `max(BEAM_SIZES)` slots (`Translator(beam_slots=...)`).
BEAM_SIZES = (2, 3, 4, 6, 8)
# Every search and teacher-forced pass records this many candidates per
# output piece, whatever a request asks for (its `top_k` is cut on the
# host), so that `top_k` never makes the server compile.
MAX_TOP_K = 10
# Pieces each decoder layer would predict (logit lens), for Step by step;
# every teacher-forced pass records them (`Translator(score_records=...)`).
LAYER_PREDICTIONS = 3
# Rows of each word-deletion pass (the sources without one word each,
# repeated up to a multiple of it): one program per length bucket.
DELETION_ROWS = 16
# Compiled programs a model keeps at most. What the app asks for needs 19:
# greedy and the beam program x 3 source-length buckets (16, 32, 64 pieces;
# one row per request) = 6, the teacher-forced pass (scoring, the layer
# predictions and the head view, with the same options; source and target
# padded to one bucket) x 3 = 3, the same pass with the 16 rows of word
# deletion (`DELETION_ROWS`) x 3 = 3, attribution x 4
# buckets (8 to 64 pieces, both methods alike) = 4, and the head view's pass
# of every layer, one per kind (padded to `max_length`) = 3; all compiled by
# the warm-up.
MAX_PROGRAMS = 20

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


class LazyTranslator:
    """A model folder whose card is read at once and whose `Translator` is
    loaded when first used: any attribute but `name`, `card` and `folder`
    loads it (once, from any thread; the others wait for it), so that the
    page can be served before every model is in memory. `lock` is held by
    whoever runs the model (`explorer.Service`, `warm_first_answer`), one
    at a time.

    Args:
        folder: the model folder.
        max_programs: as `Translator`.
    """

    def __init__(self, folder, max_programs=MAX_PROGRAMS):
        self.folder = pathlib.Path(folder)
        self.name = self.folder.name
        self.max_programs = max_programs
        card = self.folder / "metrics.json"
        self.card = (
            json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}
        )
        self.load_seconds = None
        self.lock = threading.Lock()
        self._translator = None
        self._lock = threading.Lock()

    @property
    def loaded(self):
        return self._translator is not None

    def load(self):
        """The `Translator`, loaded on the first call."""
        if self._translator is not None:  # Loaded: no lock on the hot path.
            return self._translator
        with self._lock:
            if self._translator is None:
                start = time.perf_counter()
                self._translator = load_translator(self.folder, self.max_programs)
                self.load_seconds = time.perf_counter() - start
        return self._translator

    def __getattr__(self, name):  # Only for what the proxy itself lacks.
        if name.startswith("__") or name in ("_translator", "_lock", "lock"):
            raise AttributeError(name)
        return getattr(self.load(), name)


def load_translator(folder, max_programs=MAX_PROGRAMS):
    """The `Translator` of a model folder as the app runs it: its compiled
    programs bounded, every offered beam size in one beam program."""
    return Translator.load(
        folder,
        max_programs,
        beam_slots=max(BEAM_SIZES),
        score_records=(MAX_TOP_K, LAYER_PREDICTIONS),
    )


def translate(
    translator, text, beam=1, prefix=None, disabled_heads=None, layer_predictions=0
):
    """`translator.translate` as every request of the app runs it: what a
    request cannot choose is fixed here (every candidate recorded, the
    attention, the beam's hypotheses and tree), so that a warm-up through
    this function compiles exactly the programs requests run."""
    return translator.translate(
        text,
        beam_size=beam,
        n_best=beam,
        top_k=MAX_TOP_K,
        prefix=prefix,
        disabled_heads=disabled_heads,
        return_beam=beam > 1,
        return_attention=True,
        layer_predictions=layer_predictions,
    )


def word_deletion(translator, translation):
    """`keras_mha.deletion.word_deletion` of a translation's source words
    and pieces as the app runs it (the word-deletion alignments read it)."""
    return deletion_lib.word_deletion(
        translator,
        " ".join(alignment.source_words(translation)),
        translation.target_tokens,
        batch_rows=DELETION_ROWS,
    )


def warm_up_source(length):
    """A source of `length` pieces with its end piece ("a" is one piece),
    and a target of as many: `(text, pieces)` for compiling that bucket."""
    return "a " * (length - 2), ["▁a"] * (length - 2)


def warm_first_answer(translator, length=16):
    """Loads a `LazyTranslator` and compiles what the Translate button
    needs for sources (and outputs) of up to `length` pieces, holding its
    `lock`: what
    the first visitor waits for, and all of it without Gradio (`app.py`
    runs it while Gradio is imported). Returns `(load_seconds,
    compile_seconds)`."""
    with translator.lock:
        start = time.perf_counter()
        translator.load()
        loaded = time.perf_counter()
        text, _ = warm_up_source(length)
        # Quick programs (TensorFlow: not XLA, half the compile time), which
        # serve until the background warm-up compiles the full ones. (The
        # word deletion runs only when the Word alignment view shows it:
        # that warm-up compiles it.)
        with translator.compiling("quick"):
            translate(translator, text, layer_predictions=LAYER_PREDICTIONS)
    return loaded - start, time.perf_counter() - loaded


def _check_folder(folder):
    """Raises unless the folder's files can be read as a model's (cheaply:
    `model.keras` is a zip archive, `spm.model` a file, the card JSON)."""
    if not zipfile.is_zipfile(folder / "model.keras"):
        raise ValueError("model.keras is not a Keras archive")
    if not (folder / "spm.model").is_file():
        raise FileNotFoundError("missing spm.model")
    if (folder / "metrics.json").is_file():
        json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def load_models(models_dir, lazy=False):
    """Loads each sub-folder of `models_dir` that holds a `model.keras`.

    Args:
        models_dir: the folder of model folders.
        lazy: return `LazyTranslator`s, each loaded when first used, for
            the folders that pass a cheap check of their files.

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
            if lazy:
                _check_folder(folder)
                translators[folder.name] = LazyTranslator(folder, MAX_PROGRAMS)
            else:
                translators[folder.name] = load_translator(folder)
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
