"""Translation requests as the app makes them: checked arguments, one
translation per model at a time, and messages a visitor can read.

Every view and every API endpoint goes through `Service`, so that the same
input gives the same answer and the same message wherever it comes from.
"""

import collections
import contextlib
import functools
import html
import logging
import threading
import time
import typing

import gradio as gr

from explorer import models
from explorer.models import BEAM_SIZES, LAYER_PREDICTIONS, MAX_TOP_K, LazyTranslator
from keras_mha import alignment
from keras_mha.errors import InvalidArgumentError
from keras_mha.tokens import EOS

logger = logging.getLogger("explorer")

# What a visitor reads about the input, wherever the request comes from.
EMPTY_INPUT = "Type a sentence to translate first."
TRUNCATED_INPUT = "The input was too long: only its beginning was translated."
# Requests that may wait for one model (the one it is running included);
# more are told that it is busy. Gradio's queue bounds no model on its own
# (`explorer.build_demo` sets no concurrency limit), so that a model with
# a queue never holds the workers that another model's requests need.
MAX_WAITING_PER_MODEL = 8
# Longer inputs are cut before tokenizing; the model keeps fewer pieces anyway.
MAX_INPUT_CHARS = 10_000
# The beam sizes offered, the candidates every program records (a request's
# `top_k` is cut on the host) and the layer predictions of Step by step:
# `explorer.models`, which compiles the programs for them.
MAX_BEAM_SIZE = max(BEAM_SIZES)
# Candidates shown per output piece unless asked otherwise.
TOP_K = 5
DECODINGS = ("greedy", "beam")
# The source-length buckets of the compiled programs (`keras_mha.Translator`
# pads sources to 16, 32 and 64 pieces; the shipped models take 64).
WARM_UP_LENGTHS = (16, 32, 64)
WARM_UP_KINDS = ("translate", "beam", "score", "attribute", "head", "deletion")
ATTRIBUTION_METHODS = ("integrated_gradients", "grad_x_input")
ATTRIBUTION_STEPS = 16  # Integrated gradients' steps unless asked otherwise.
MAX_ATTRIBUTION_STEPS = 64


class Answer(typing.NamedTuple):
    """What `Service.translate` returns."""

    translation: object  # keras_mha.Translation
    seconds: float
    beam_size: int  # The beam the search used (1: greedy).


def user_error(message):
    """A `gr.Error` whose message is shown as text, never as HTML."""
    return gr.Error(html.escape(str(message)))


def friendly_errors(fn):
    """Turns unexpected exceptions into a short message (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            logger.exception("%s failed", fn.__name__)
            raise user_error(
                f"Sorry, that did not work ({type(error).__name__})."
            ) from error

    return wrapper


def _integer(value, name, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise user_error(
            f"`{name}` must be a whole number from {low} to {high}. Received: {value!r}"
        ) from None
    if not low <= number <= high:
        raise user_error(f"`{name}` must be from {low} to {high}. Received: {number}")
    return number


# Attention blocks traced for the head view and kept (every head and query
# of a block; a 64-piece block of a 256-wide model holds about 0.7 MB).
TRACED_BLOCKS = 32
# The stages of `keras_mha.head_trace.trace_head` with one row per key.
KEY_STAGES = (
    "key_inputs",
    "keys",
    "values",
    "products",
    "dots",
    "scaled",
    "mask",
    "weights",
)


def _keep_top(translation, top_k):
    """Cuts a translation's recorded candidates to the `top_k` asked for."""
    translation.alternatives = [step[:top_k] for step in translation.alternatives]
    if not top_k:
        translation.alternatives = []


class Service:
    """The loaded models behind checked `translate`, `score` and `align`.

    Args:
        translators: `{name: keras_mha.Translator}`.
    """

    def __init__(self, translators):
        self.translators = dict(translators)
        # One request per model at a time: decoding keeps the CPU busy anyway
        # and a translator's cache of compiled searches has a single writer.
        # (A `LazyTranslator` brings its own lock, which its early warm-up
        # holds: `explorer.models.warm_first_answer`.)
        self.locks = {
            name: getattr(translator, "lock", None) or threading.Lock()
            for name, translator in self.translators.items()
        }
        self._waiting = collections.Counter()
        self._waiting_lock = threading.Lock()
        # Set in the thread that runs `warm_up`: its requests hold the
        # model's lock like any other but take no visitor's place.
        self._warming_up = threading.local()
        self.warm = set()  # Models whose warm-up has finished.
        # The last traced attention blocks (`keras_mha.head_trace.trace_layer`:
        # every head and query of one block), so that choosing another
        # query or head of a block needs no second pass through the model.
        self._traces = collections.OrderedDict()
        self._traces_lock = threading.Lock()

    @contextlib.contextmanager
    def using(self, model):
        """Holds `model`'s lock; refuses a request beyond
        `MAX_WAITING_PER_MODEL` waiting for it (a visitor reads why).
        The warm-up's own requests are not counted."""
        if getattr(self._warming_up, "active", False):
            with self.locks[model]:
                yield
            return
        with self._waiting_lock:
            if self._waiting[model] >= MAX_WAITING_PER_MODEL:
                raise user_error(
                    f"The model {model} is busy with other requests; try again "
                    "in a moment."
                )
            self._waiting[model] += 1
        try:
            with self.locks[model]:
                yield
        finally:
            with self._waiting_lock:
                self._waiting[model] -= 1

    def requests(self, model):
        """Visitor requests admitted for `model`: running or waiting."""
        with self._waiting_lock:
            return self._waiting[model]

    def translator(self, model):
        if model not in self.translators:
            available = ", ".join(self.translators) or "none loaded"
            raise user_error(f"Unknown model {model!r} (available: {available}).")
        return self.translators[model]

    def beam_size(self, decoding, beam_size):
        """1 for greedy, else `beam_size` checked."""
        if decoding not in DECODINGS:
            raise user_error(f"Unknown decoding {decoding!r}: greedy or beam.")
        if decoding == "greedy":
            return 1
        beam = _integer(beam_size, "beam_size", min(BEAM_SIZES), MAX_BEAM_SIZE)
        if beam not in BEAM_SIZES:
            raise user_error(
                f"`beam_size` must be one of {', '.join(map(str, BEAM_SIZES))}. "
                f"Received: {beam}"
            )
        return beam

    def compiled_programs(self):
        """`{model: compiled programs kept}` (0 for a model not loaded yet)."""
        return {
            name: t.compiled_programs if getattr(t, "loaded", True) else 0
            for name, t in self.translators.items()
        }

    def translate(
        self,
        text,
        model,
        decoding="greedy",
        beam_size=4,
        top_k=TOP_K,
        prefix=None,
        disabled_heads=None,
        layer_predictions=0,
    ):
        """Translates `text`; returns an `Answer` (translation, seconds, beam).

        Args:
            text: the source text (cut to `MAX_INPUT_CHARS`).
            model: model folder name.
            decoding: "greedy" or "beam".
            beam_size: beams for beam search; with it, every hypothesis is
                kept in `Translation.n_best` and the search tree in
                `Translation.beam_steps`.
            top_k: candidates recorded for each output piece (0 to 10).
            prefix: text or pieces forced as the first output pieces; empty
                or `None` forces nothing.
            disabled_heads: heads switched off, as `Translator.translate`.
            layer_predictions: pieces each decoder layer would predict, per
                output piece (one more teacher-forced pass; 0: none).

        Raises:
            gr.Error: with a message for any bad argument.
        """
        translator = self.translator(model)
        beam = self.beam_size(decoding, beam_size)
        top_k = _integer(top_k, "top_k", 0, MAX_TOP_K)
        prefix = self._prefix(prefix, translator)
        text = str(text or "")
        start = time.perf_counter()
        try:
            with self.using(model):
                translation = models.translate(
                    translator,
                    text[:MAX_INPUT_CHARS],
                    beam,
                    prefix,
                    disabled_heads,
                    layer_predictions,
                )
        except InvalidArgumentError as error:  # Its message names the fault.
            raise user_error(error) from error
        for hypothesis in [translation, *translation.n_best]:
            _keep_top(hypothesis, top_k)
        translation.truncated |= len(text) > MAX_INPUT_CHARS
        return Answer(translation, time.perf_counter() - start, beam)

    @staticmethod
    def _prefix(prefix, translator):
        """The forced prefix cut like a source (`None` for an empty one): text
        to `MAX_INPUT_CHARS`, pieces to one more than the model can output
        (so that the library still names the fault)."""
        if prefix is None:
            return None
        if isinstance(prefix, str):
            return prefix[:MAX_INPUT_CHARS] if prefix.strip() else None
        return [str(piece) for piece in list(prefix)[: translator.model.max_length + 1]]

    def score(self, source, target, model, top_k=TOP_K):
        """How likely the model finds `target` (text, or a list of pieces)
        for `source`.

        Returns:
            `(Translation, seconds)`: the target's pieces, their
            probabilities, the sum of their log-probabilities, the model's
            own top-k candidates at each piece and the attention.

        Raises:
            gr.Error: for an unknown model, an empty source or target, or a
                target the model cannot take.
        """
        translator = self.translator(model)
        top_k = _integer(top_k, "top_k", 0, MAX_TOP_K)
        source = str(source or "")
        if isinstance(target, (list, tuple)):
            target = [str(piece) for piece in target[: translator.model.max_length + 1]]
        else:
            target = str(target or "")[:MAX_INPUT_CHARS]
        if not source.strip():
            raise user_error(EMPTY_INPUT)
        if not (target.strip() if isinstance(target, str) else target):
            raise user_error("Type your translation to score it.")
        start = time.perf_counter()
        try:
            with self.using(model):
                translation = translator.score(
                    source[:MAX_INPUT_CHARS], target, top_k=MAX_TOP_K
                )
        except InvalidArgumentError as error:
            raise user_error(error) from error
        _keep_top(translation, top_k)
        return translation, time.perf_counter() - start

    def head_importance(self, source, target, model):
        """Each head's importance by ablation for `source` and its
        translation `target` (pieces): `(drops, seconds)`, as
        `keras_mha.head_importance.head_importance`."""
        from keras_mha.head_importance import head_importance

        translator = self.translator(model)
        source = str(source or "")[:MAX_INPUT_CHARS]
        if not source.strip():
            raise user_error(EMPTY_INPUT)
        pieces = [str(p) for p in target if p != EOS]
        pieces = pieces[: translator.model.max_length - 1]
        start = time.perf_counter()
        try:
            with self.using(model):
                drops = head_importance(translator, source, pieces)
        except InvalidArgumentError as error:
            raise user_error(error) from error
        return drops, time.perf_counter() - start

    def word_deletion(self, translation, model):
        """The `keras_mha.deletion.WordDeletion` of a translation's source
        words and pieces (the word-deletion alignment methods read it), in
        passes of `explorer.models.DELETION_ROWS` rows; `None` for a source
        without words (nothing to delete, nothing to link)."""
        translator = self.translator(model)
        if not alignment.source_words(translation):
            return None
        try:
            with self.using(model):
                return models.word_deletion(translator, translation)
        except InvalidArgumentError as error:
            raise user_error(error) from error

    def attribute(self, source, target, model, method, steps=ATTRIBUTION_STEPS):
        """What each source and prefix piece contributed to each piece of
        `target` (text or pieces; empty: the model's own translation).

        Returns:
            `(keras_mha.attribution.Attribution, seconds)`.

        Raises:
            gr.Error: for an unknown model or method, an empty source, or a
                target the model cannot take.
        """
        translator = self.translator(model)
        if method not in ATTRIBUTION_METHODS:
            raise user_error(
                f"Unknown attribution method {method!r}: "
                + " or ".join(ATTRIBUTION_METHODS)
            )
        steps = _integer(steps, "steps", 1, MAX_ATTRIBUTION_STEPS)
        source = str(source or "")[:MAX_INPUT_CHARS]
        if not source.strip():
            raise user_error(EMPTY_INPUT)
        if isinstance(target, (list, tuple)):
            target = [str(p) for p in target[: translator.model.max_length + 1]]
        else:
            target = str(target or "")[:MAX_INPUT_CHARS] or None
        start = time.perf_counter()
        if target is None:  # The model's own, from the page's search program.
            target = self.translate(source, model, top_k=0).translation.target_tokens
        try:
            with self.using(model):
                found = translator.attribute(source, target, method=method, steps=steps)
        except InvalidArgumentError as error:
            raise user_error(error) from error
        return found, time.perf_counter() - start

    def head(self, source, target, model, kind, layer, head, query):
        """Every stage of one head's attention row (`keras_mha.head_trace`)
        for `source` and its translation `target` (text or pieces; empty:
        the model's own).

        Returns:
            `(stages, translation, seconds)`: the stages dict and the scored
            translation whose pieces the rows and columns are.
        """
        from keras_mha.head_trace import check_layer, head_stages

        translator = self.translator(model)
        source = str(source or "")[:MAX_INPUT_CHARS]
        if not source.strip():
            raise user_error(EMPTY_INPUT)
        layer = _integer(layer, "layer", 0, 10_000)
        head = _integer(head, "head", 0, 10_000)
        query = _integer(query, "query", 0, 10_000)
        start = time.perf_counter()
        if not isinstance(target, (list, tuple)) and not str(target or "").strip():
            target = self.translate(source, model, top_k=0).translation.target_tokens
        if isinstance(target, (list, tuple)):
            # An output cut at `max_length` has no end piece: its pieces
            # but the last are what the decoder read.
            pieces = [str(p) for p in target if p != EOS]
            target = pieces[: translator.model.max_length - 1]
        translation, _ = self.score(source, target, model, top_k=0)
        piece = translator.tokenizer.piece_to_id
        ids = [piece(p) for p in translation.source_tokens]
        decoder = [piece(p) for p in translation.decoder_input_tokens]
        key = (model, tuple(ids), tuple(decoder), str(kind))
        try:
            check_layer(translator.model, str(kind), layer)  # Before the pass.
            with self._traces_lock:
                traced = self._traces.get(key)
                if traced is not None:
                    self._traces.move_to_end(key)
            if traced is None:
                # Every layer of the kind in one compiled pass.
                with self.using(model):
                    traced = translator.trace_layers(ids, decoder, str(kind))
                with self._traces_lock:
                    self._traces[key] = traced
                    while len(self._traces) > TRACED_BLOCKS:
                        self._traces.popitem(last=False)
            stages = head_stages(traced[layer], head, query)
        except InvalidArgumentError as error:
            raise user_error(error) from error
        keys = len(ids) if kind != "decoder" else len(decoder)
        for name in KEY_STAGES:
            stages[name] = stages[name][:keys]
        stages["positions"] = stages["positions"][
            : len(ids) if kind == "encoder" else len(decoder)
        ]
        return stages, translation, time.perf_counter() - start

    def warm_up(self, names=None, source_lengths=WARM_UP_LENGTHS, kinds=WARM_UP_KINDS):
        """Loads the models `names` (default: all) and compiles, for each
        source-length bucket of `source_lengths`, every program a request
        of `kinds` can need: `"translate"` greedy search and the layer
        predictions (the Translate button), `"beam"` (every beam size: one
        program), `"score"` the teacher-forced pass (scoring, the head
        view; source and target share a bucket), `"attribute"` (both
        methods: one program) and `"head"` the head view's pass of each kind
        (every length: one program per kind).
        Each goes through the request path, so that exactly the programs
        requests use are compiled; a model is `warm` once every kind of its
        shortest bucket is.

        Returns:
            `{name: {"load_seconds", "compile_seconds"}}`.
        """
        self._warming_up.active = True
        try:
            return self._warm_up(names, source_lengths, kinds)
        finally:
            self._warming_up.active = False

    def _warm_up(self, names, source_lengths, kinds):
        timings = {}
        for name in self.translators if names is None else names:
            translator = self.translators[name]
            start = time.perf_counter()
            if isinstance(translator, LazyTranslator):
                translator.load()
            loaded = time.perf_counter()
            with translator.compiling("full"):
                self._warm_up_model(name, translator, source_lengths, kinds)
            timings[name] = {
                "load_seconds": round(loaded - start, 2),
                "compile_seconds": round(time.perf_counter() - loaded, 2),
            }
        return timings

    def _warm_up_model(self, name, translator, source_lengths, kinds):
        """Every program of `kinds` for each length of `source_lengths`,
        compiled through the request path."""
        limit = translator.model.max_length
        for length in source_lengths:
            if length > limit:
                continue
            # A source of `length` pieces ("a" is one piece), a target of
            # as many (with the end piece), attribution of a pair of this
            # bucket and, for the shortest, of 8 pieces.
            text, pieces = models.warm_up_source(length)
            if "translate" in kinds:
                self.translate(text, name, layer_predictions=LAYER_PREDICTIONS)
            if "beam" in kinds:
                self.translate(text, name, "beam", MAX_BEAM_SIZE)
            if "score" in kinds:
                self.score(text, pieces, name)
            if "attribute" in kinds:
                shortest = length == min(WARM_UP_LENGTHS)
                for n in [length - 2] + ([6] if shortest else []):
                    self.attribute("a " * n, ["▁a"] * (n - 1), name, "grad_x_input")
            if "head" in kinds:
                for kind in ("encoder", "decoder", "cross"):
                    self.head(text, pieces, name, kind, 0, 0, 0)
            if "deletion" in kinds:
                scored, _ = self.score(text, pieces, name)
                self.word_deletion(scored, name)
            if length == min(WARM_UP_LENGTHS) and set(kinds) >= set(WARM_UP_KINDS):
                self.warm.add(name)

    def warming(self):
        """The models not warmed up yet, in menu order."""
        return [name for name in self.translators if name not in self.warm]
