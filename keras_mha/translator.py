"""Translator: a trained model folder (model + tokenizer + card) behind
`translate()` and `score()`, which return the text, the subword pieces, every
attention head and what the model weighed at each step.

Shape legend (numpy outputs): N layers, H heads, S source pieces, T target
pieces. Rows are queries, columns are keys.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import re
import tempfile
import threading
import unicodedata
import zipfile

import keras
import numpy as np
import sentencepiece

from keras_mha.decoding import (
    BeamSearch,
    GreedySearch,
    RefillBeamSearch,
    RefillGreedySearch,
    check_integer,
    compile_search,
    encode_inputs,
    teacher_forced_scores,
)
from keras_mha.errors import InvalidArgumentError
from keras_mha.tokens import BOS, CONTROL_PIECES, EOS

ATTENTION_KINDS = ("encoder", "decoder", "cross")
# Padded batch sizes and source lengths: each (batch, length) pair compiles
# once, so the buckets are few; the output buffer is always the model's
# `max_length` and the loop stops as soon as every sequence has ended.
_BATCH_BUCKETS = (1, 4, 16, 64)
_LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
# Bulk decoding (`RefillGreedySearch`, `RefillBeamSearch`) serves the texts
# of one source length through `batch_size` rows where they fill at least
# `_REFILL_BATCHES` batches, and through `batch_size // _FEW_ROWS_DIVISOR`
# rows where there are at least `_FEW_ROWS_MIN` of them and the call streams
# other texts through full rows (`_stream_rows`); fewer go in one batch. It
# takes at most `_REFILL_INPUTS` of them per compiled call (fewer are padded
# to a power of two times the rows, so that few programs serve every list),
# and encodes them packed into rows (`_pack`).
_REFILL_BATCHES = 2
_FEW_ROWS_DIVISOR = 4
_FEW_ROWS_MIN = 4
_REFILL_INPUTS = 2048
# Searches run at once by default (`Translator.streams`), at most one per core.
_STREAMS = 2
_CONTROL = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f]")


@dataclasses.dataclass
class Translation:
    """One translation and what the model looked at while making it.

    Attributes:
        text: the detokenized translation.
        source_tokens: the S source pieces as shown (columns of `encoder`
            and `cross`).
        target_tokens: the T output pieces, the end token included (rows of
            `decoder` and `cross`).
        decoder_input_tokens: the T decoder inputs, `<s>` then the outputs
            shifted by one (columns of `decoder`).
        score: log-probability of the output (beam search: normalized by
            the length penalty).
        token_probs: probability of each of the T output pieces.
        truncated: the source was longer than the model takes and was cut.
        attention: `{"encoder": (N, H, S, S), "decoder": (N, H, T, T),
            "cross": (N, H, T, S)}` numpy arrays, no padding.
        n_best: with `n_best > 1`, the other hypotheses (best first).
        alternatives: with `top_k`, one list per output piece of the `k`
            most probable `(piece, probability)` pairs of the distribution
            the piece was chosen from, best first (greedy: the chosen piece
            first unless it was forced).
        prefix_length: how many of the first output pieces were forced.
        beam_steps: with `return_beam`, one list per step of the live
            hypotheses after it, as dicts `{"parent": int, "piece": str,
            "score": float, "finished": bool}`; `parent` indexes the
            previous step's list, `score` is the normalized ranking score.
            A finished hypothesis carried to later steps has the piece
            `<pad>`.
        beam_slot: with `return_beam`, this hypothesis' index in the last
            step of `beam_steps` (follow `parent` from there to the start).
        finished: the output ended with the end piece; False when decoding
            stopped first (at `max_length`), a cut-off hypothesis.
        layer_predictions: with `layer_predictions=k` (`score`), per decoder
            layer a list per output position of the k `(piece, probability)`
            pairs that layer's output predicts (logit lens); the last layer's
            are the model's own distribution.
    """

    text: str
    source_tokens: list
    target_tokens: list
    decoder_input_tokens: list
    score: float
    token_probs: list
    truncated: bool = False
    attention: dict = dataclasses.field(default_factory=dict)
    n_best: list = dataclasses.field(default_factory=list)
    alternatives: list = dataclasses.field(default_factory=list)
    prefix_length: int = 0
    beam_steps: list = dataclasses.field(default_factory=list)
    beam_slot: int | None = None
    finished: bool = True
    layer_predictions: list = dataclasses.field(default_factory=list)

    def to_npz_dict(self):
        """Flat dict for `np.savez`: attention arrays and token labels."""
        arrays = {f"{k}_attention": v for k, v in self.attention.items()}
        arrays.update(
            source_tokens=np.array(self.source_tokens),
            target_tokens=np.array(self.target_tokens),
            decoder_input_tokens=np.array(self.decoder_input_tokens),
            token_probs=np.array(self.token_probs, "float32"),
        )
        return arrays


def _cores():
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def clean_text(text):
    """Normalizes user input: NFKC, no control characters, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def _keep_asked(out, top_k, return_attention, layer_predictions):
    """A teacher-forced pass's outputs cut to what a call asked for (a
    program may record more: `Translator(score_records=...)`)."""
    out = dict(out)
    for key, k in (
        ("alternative_ids", top_k),
        ("alternative_log_probs", top_k),
        ("layer_ids", layer_predictions),
        ("layer_log_probs", layer_predictions),
    ):
        if key in out:
            if k:
                out[key] = out[key][..., :k]
            else:
                del out[key]
    if not return_attention:
        for key in ATTENTION_KINDS:
            out.pop(key, None)
    return out


def _firsts_first(jobs, program):
    """`jobs` with the first job of each `program(job)` moved to the front,
    then the others, each part in order. Run on `streams` threads, the first
    jobs then compile their programs at once instead of one after the other
    (the first greedy pass over the 1,500 en-es test sources, which
    compiles a bulk search and a batched one: 4.9 s instead of 5.2 s on JAX,
    6.8-7.0 s instead of 7.5-8.1 s on TensorFlow, a 2-core AMD EPYC)."""
    firsts, others, seen = [], [], set()
    for job in jobs:
        key = program(job)
        (others if key in seen else firsts).append(job)
        seen.add(key)
    return firsts + others


def _stream_rows(count, batch_size, tail=False):
    """The rows through which a bulk translation streams `count` texts of
    one source shape, or 0 where they go in one batch: `batch_size` where
    they fill `_REFILL_BATCHES` batches; else, in a `tail` (a call that
    streams other texts through full rows), `batch_size //
    _FEW_ROWS_DIVISOR` where that and `count` are at least `_FEW_ROWS_MIN`.

    Those few rows serve a tail of long sources: as batches, they would run
    on one thread, each batch `batch_size` rows (or a bucket of them) for
    as many steps as its longest output; streamed, they are dealt to every
    thread and each row ends with its own output (1,500 en-es test
    sources: the 66 of 17 to 32 pieces took a third of the decoding
    threads' time as two batches of 64 rows, one holding 2 sources, and
    less than half of that through 16 rows per thread; beam 4 of 256: 13
    such sources). A call with no full streams keeps its batches: one
    program each, where streams would compile an encoder too."""
    if count >= _REFILL_BATCHES * batch_size:
        return batch_size
    few = batch_size // _FEW_ROWS_DIVISOR
    if tail and min(count, few) >= _FEW_ROWS_MIN:
        return few
    return 0


def _pack(lengths, width):
    """Sequences of `lengths` pieces packed into rows of `width` pieces, in
    order, each into the fullest row it fits (best fit; in decreasing order
    of length this leaves about 5 % of a row empty).

    Returns:
        `(row, offset, segment, rows)`: per sequence its row, the offset of
        its first piece and its segment id in the row (1, 2, ...; 0 is the
        row's padding), and the number of rows.
    """
    count = len(lengths)
    row = np.zeros(count, "int64")
    offset = np.zeros(count, "int64")
    segment = np.zeros(count, "int64")
    by_room = [[] for _ in range(width + 1)]  # the rows with that much room
    used, members = [], []
    for i, length in enumerate(lengths):
        room = next((r for r in range(length, width + 1) if by_room[r]), None)
        if room is None:
            r = len(used)
            used.append(0)
            members.append(0)
        else:
            r = by_room[room].pop()
        row[i], offset[i] = r, used[r]
        members[r] += 1
        segment[i] = members[r]
        used[r] += length
        by_room[width - used[r]].append(r)
    return row, offset, segment, len(used)


def _bucket(value, buckets):
    return next((b for b in buckets if b >= value), value)


def load_transformer(path):
    """A saved `Transformer` from its `.keras` file, without drawing initial
    weights that the saved ones replace.

    `keras.saving.load_model` builds the model with its random initializers
    and then overwrites every weight; on JAX each initializer of a new shape
    compiles a program. Here the model is built from the same config with
    zero initializers and its weights are read from the same file, so the
    result is the same model (shipped en-fr on a 2-core CPU, JAX: 2.7 s that
    way, 0.7 s this way; TensorFlow: 0.75 s either way).
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not a saved Keras model ({error})") from None
    with archive, tempfile.TemporaryDirectory() as folder:
        missing = {"config.json", "model.weights.h5"} - set(archive.namelist())
        if missing:
            raise ValueError(f"{path}: not a saved Keras model (no {sorted(missing)})")
        config = json.loads(archive.read("config.json"))
        # Read from a plain file: h5py seeking inside the (deflated) zip
        # member is slower than extracting it.
        weights = archive.extract("model.weights.h5", folder)
        model = _build_without_initial_weights(config)
        model.load_weights(weights)
    return model


def _build_without_initial_weights(config):
    """The `Transformer` of a saved config, built with zero initializers."""
    arguments = config["config"]
    saved = [
        arguments.get("kernel_initializer", "glorot_uniform"),
        arguments.get("embeddings_initializer"),
    ]
    arguments.update(kernel_initializer="zeros", embeddings_initializer="zeros")
    model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    # The model's config names the saved initializers again (a model built
    # from it, or saved again, initializes as the original would).
    model.kernel_initializer, model.embeddings_initializer = (
        keras.initializers.get(initializer) for initializer in saved
    )
    return model


class Translator:
    """A trained translation model ready to translate.

    Args:
        model: a `keras_mha.Transformer`.
        tokenizer: a `sentencepiece.SentencePieceProcessor` (the same
            `spm.model` the training pipeline used through keras-hub).
        card: dict of model-card facts (`metrics.json`), may be empty.
        name: display name, e.g. "en-es".
        max_programs: the most compiled programs (one per search setting
            and input shape) kept at once; reaching it drops them all, to be
            compiled again when next asked for. `None`: no limit.
        beam_slots: with an int K, every beam search of a beam size up to
            K runs in one compiled program of K slots (the same hypotheses
            as a search of that size; the work of K beams), so that a server
            offering several beam sizes compiles one beam program per shape.
            `None`: one program per beam size, each doing only its own work.
        score_records: with `(k, m)`, every teacher-forced pass (`score`,
            and the layer predictions of `translate`) that asks for at most
            k candidates and m layer predictions runs one compiled program
            that records k candidates, m layer predictions and the
            attention, and keeps what the call asked for. `None`: one
            program per combination asked for, each recording only that.
        streams: int, searches that one `translate` of many texts runs at
            once, each on its own thread: its bulk streams (the texts cut
            into `streams` interleaved shares) and its batches. A search of
            64 rows multiplies matrices too small to keep two cores busy,
            so two of them at once do more per second. `None`: 2, or 1
            where this process may run on one core only.

    Example:

    >>> translator = Translator.load("saved_models/en-es")  # doctest: +SKIP
    >>> translator.translate("How are you?").text  # doctest: +SKIP
    '¿Cómo estás?'
    """

    def __init__(
        self,
        model,
        tokenizer,
        card=None,
        name="model",
        max_programs=None,
        beam_slots=None,
        score_records=None,
        streams=None,
    ):
        if streams is None:
            streams = min(_STREAMS, _cores())
        check_integer("streams", streams, minimum=1)
        if max_programs is not None:
            check_integer("max_programs", max_programs, minimum=1)
        if beam_slots is not None:
            check_integer("beam_slots", beam_slots, minimum=1)
        if score_records is not None:
            score_records = tuple(score_records)
            if len(score_records) != 2:
                raise InvalidArgumentError(
                    "`score_records` must be (top_k, layer_predictions). "
                    f"Received: score_records={score_records!r}"
                )
            check_integer("score_records[0]", score_records[0], minimum=0)
            check_integer("score_records[1]", score_records[1], minimum=0)
        self.beam_slots = beam_slots
        self.score_records = score_records
        self.streams = streams
        self.model = model
        self.tokenizer = tokenizer
        self.card = card or {}
        self.name = name
        self.bos_id = tokenizer.bos_id()
        self.eos_id = tokenizer.eos_id()
        # Every id's piece: a list lookup per output piece, where the
        # tokenizer's own call costs ~2 us (a tenth of a bulk pass's host work).
        self._piece_table = [
            tokenizer.id_to_piece(i) for i in range(tokenizer.get_piece_size())
        ]
        self.max_programs = max_programs
        self._searches = {}
        # (setting key, input shapes, full) of every program compiled and
        # kept; `full` False for a quick one (`compiling`).
        self._programs = set()
        self.programs_dropped = 0
        self._compile_mode = threading.local()
        self._programs_lock = threading.Lock()  # Calls may come from threads.

    @property
    def compiled_programs(self):
        """How many compiled programs (setting x input shapes) are kept."""
        return len(self._programs)

    @property
    def quick_programs(self):
        """How many of them are quick ones (`compiling("quick")`)."""
        return sum(not full for _, _, full in self._programs)

    @contextlib.contextmanager
    def compiling(self, mode):
        """How the calls of this thread compile a program they need.

        Outside any `compiling`, a call runs the full program of its shape,
        else its quick one, else compiles the full one. A full program
        replaces the quick one of its shape.

        Args:
            mode: `"quick"`: a shape without a program gets a quick one
                (TensorFlow: its own graph, not XLA: about half the compile
                time and 2-3x slower to run; on JAX the full one), which
                then serves that shape; for a first answer that should not
                wait. `"full"`: a shape without a full program gets one,
                even where a quick one serves it; for a warm-up.
        """
        if mode not in ("quick", "full"):
            raise InvalidArgumentError(
                f'`mode` must be "quick" or "full". Received: mode={mode!r}'
            )
        before = getattr(self._compile_mode, "mode", None)
        self._compile_mode.mode = mode
        try:
            yield
        finally:
            self._compile_mode.mode = before

    def _compiled(self, key, fn):
        """`fn`, compiled, counting each new input shape as one program."""
        compiled = compile_search(self.model, fn)
        # The same function without XLA, where the backend has two kinds
        # of program (`compiling`); else `None`.
        quick = compile_search(self.model, fn, xla=False)
        two_kinds = quick is not None

        def run(*args):
            shapes = tuple(np.shape(a) for a in args if isinstance(a, np.ndarray))
            full = (key, shapes, True)
            if full in self._programs:
                return compiled(*args)
            mode = getattr(self._compile_mode, "mode", None)
            with self._programs_lock:
                program = choose(key, shapes, mode)
            return (compiled if program[2] else quick)(*args)

        def choose(key, shapes, mode):
            """The program that runs these shapes (its bookkeeping)."""
            nonlocal quick
            full = (key, shapes, True)
            if full in self._programs:
                return full
            program = full
            if two_kinds and mode != "full":
                if mode == "quick" or (key, shapes, False) in self._programs:
                    program = (key, shapes, False)
            if program == full and (key, shapes, False) in self._programs:
                # The full program replaces the quick one; once no shape
                # of this setting has a quick one, a new (empty) function
                # lets their memory go.
                self._programs.discard((key, shapes, False))
                if not any(k == key and not f for k, _, f in self._programs):
                    quick = compile_search(self.model, fn, xla=False)
            if program not in self._programs:
                if self.max_programs and len(self._programs) >= self.max_programs:
                    # Drop every compiled program (their memory goes with
                    # them) rather than grow without bound.
                    self.programs_dropped += len(self._programs)
                    self._searches.clear()
                    self._programs.clear()
                self._programs.add(program)
                self._searches.setdefault(key, run)
            return program

        return run

    @classmethod
    def load(
        cls, path, max_programs=None, beam_slots=None, score_records=None, streams=None
    ):
        """Loads `model.keras`, `spm.model` and `metrics.json` from a folder;
        the other arguments are the constructor's.

        Raises:
            FileNotFoundError / ValueError with the folder in the message.
        """
        path = pathlib.Path(path)
        for required in ("model.keras", "spm.model"):
            if not (path / required).is_file():
                raise FileNotFoundError(f"{path}: missing {required}")
        model = load_transformer(path / "model.keras")
        tokenizer = sentencepiece.SentencePieceProcessor(
            model_file=str(path / "spm.model")
        )
        if tokenizer.get_piece_size() != model.target_vocabulary_size:
            raise InvalidArgumentError(
                f"{path}: tokenizer has {tokenizer.get_piece_size()} pieces, the "
                f"model {model.target_vocabulary_size}"
            )
        card = {}
        if (path / "metrics.json").is_file():
            card = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        return cls(
            model,
            tokenizer,
            card,
            name=path.name,
            max_programs=max_programs,
            beam_slots=beam_slots,
            score_records=score_records,
            streams=streams,
        )

    # ------------------------------------------------------------ helpers
    @property
    def max_source_length(self):
        return self.model.max_length

    def warmup(self, beam_sizes=(1,), batch_sizes=(1,), source_lengths=(16,), top_k=0):
        """Compiles the searches for these shapes ahead of the first request."""
        for beam_size in beam_sizes:
            for batch_size in batch_sizes:
                for length in source_lengths:
                    self.translate(
                        ["a " * (length - 2)] * batch_size, beam_size, top_k=top_k
                    )

    def _slots(self, beam_size):
        """The slots of the compiled search that runs `beam_size` beams."""
        if self.beam_slots and 1 < beam_size <= self.beam_slots:
            return self.beam_slots
        return beam_size

    def _search(self, beam_size, max_length, length_penalty, options):
        """The compiled search for these settings (built once, then reused)."""
        beam_size = self._slots(beam_size)
        # Greedy search has no length penalty: one program for every value.
        alpha = float(length_penalty) if beam_size > 1 else None
        key = ("search", beam_size, max_length, alpha, options)
        if key not in self._searches:
            return_attention, top_k, return_beam = options
            common = dict(
                max_length=max_length,
                bos_id=self.bos_id,
                eos_id=self.eos_id,
                top_k=top_k,
                return_attention=return_attention,
            )
            if beam_size == 1:
                search = GreedySearch(**common)
            else:
                search = BeamSearch(
                    beam_size=beam_size,
                    length_penalty=length_penalty,
                    return_beam=return_beam,
                    **common,
                )
            self._searches[key] = self._compiled(key, search)
        return self._searches[key]

    def _scorer(self, top_k, return_attention, layer_predictions=0):
        key = ("score", top_k, return_attention, layer_predictions)
        if key not in self._searches:

            def score(model, encoder_inputs, decoder_inputs, labels, head_masks):
                return teacher_forced_scores(
                    model,
                    encoder_inputs,
                    decoder_inputs,
                    labels,
                    head_masks=head_masks,
                    top_k=top_k,
                    return_attention=return_attention,
                    layer_predictions=layer_predictions,
                )

            self._searches[key] = self._compiled(key, score)
        return self._searches[key]

    def _head_masks(self, disabled_heads):
        """`{kind: (N, H)}` float32 multipliers, 0 for a disabled head."""
        model = self.model
        shapes = {
            "encoder": (model.num_encoder_layers, model.num_heads),
            "decoder": (model.num_decoder_layers, model.num_heads),
            "cross": (model.num_decoder_layers, model.num_heads),
        }
        masks = {k: np.ones(s, "float32") for k, s in shapes.items()}
        for kind, heads in (disabled_heads or {}).items():
            if kind not in masks:
                raise InvalidArgumentError(
                    f"Unknown attention kind {kind!r} in `disabled_heads`; "
                    f"expected one of {ATTENTION_KINDS}"
                )
            for layer, head in heads:
                if not (0 <= layer < shapes[kind][0] and 0 <= head < shapes[kind][1]):
                    raise InvalidArgumentError(
                        f"`disabled_heads[{kind!r}]` has (layer={layer}, "
                        f"head={head}); the model has {shapes[kind][0]} layers "
                        f"of {shapes[kind][1]} heads"
                    )
                masks[kind][layer, head] = 0.0
        return masks

    def _encode(self, text):
        """Source ids, cut to the model's length; `(ids, truncated)`."""
        ids = self.tokenizer.encode(text)
        limit = self.max_source_length
        return ids[:limit], len(ids) > limit

    def _pieces(self, ids):
        """The pieces of a list or 1-D array of ids."""
        table = self._piece_table
        return [table[i] for i in np.asarray(ids, "int64").tolist()]

    def target_ids(self, target, argument="target", allow_unknown=False):
        """Ids of a target given as text or as a list of pieces.

        Text is cleaned and tokenized like a source; pieces are looked up one
        by one. The end piece is not added.

        Text with characters the vocabulary lacks is refused (they could
        only be forced as `<unk>`) unless `allow_unknown` (scoring a text
        that a person wrote: those characters are scored as `<unk>`).

        Raises:
            ValueError: for text with characters the vocabulary lacks, an
                unknown piece or a control
                piece (`<s>`, `<pad>`; `</s>` only as the last piece of a
                list).
        """
        if isinstance(target, str):
            text = clean_text(target)
            ids = self.tokenizer.encode(text)
            if not allow_unknown and self.tokenizer.unk_id() in ids:
                missing = [
                    c
                    for c in dict.fromkeys(text)
                    if not c.isspace()
                    and self.tokenizer.unk_id() in self.tokenizer.encode(c)
                ]
                raise InvalidArgumentError(
                    f"`{argument}` has characters the model's vocabulary lacks: "
                    + ", ".join(map(repr, missing))
                    + "; they can only be forced as `<unk>`. Leave them out."
                )
            return ids
        pieces = list(target)
        if pieces and pieces[-1] == EOS:
            pieces = pieces[:-1]
        ids = []
        for position, piece in enumerate(pieces):
            if not isinstance(piece, str):
                raise InvalidArgumentError(
                    f"`{argument}` must be text or a list of pieces (str). "
                    f"Received: {piece!r} at position {position}"
                )
            piece_id = self.tokenizer.piece_to_id(piece)
            if piece in CONTROL_PIECES or (
                piece_id == self.tokenizer.unk_id() and piece != "<unk>"
            ):
                kind = "control" if piece in CONTROL_PIECES else "unknown"
                raise InvalidArgumentError(
                    f"`{argument}` has an {kind} piece {piece!r} at position "
                    f"{position}; pieces are those of `target_tokens` "
                    f"(e.g. {self._pieces(self.tokenizer.encode('Hello'))})"
                )
            ids.append(piece_id)
        return ids

    # ------------------------------------------------------------ translate
    def translate(
        self,
        text_or_texts,
        beam_size=1,
        length_penalty=0.6,
        max_length=None,
        n_best=1,
        disabled_heads=None,
        return_attention=False,
        batch_size=64,
        top_k=0,
        prefix=None,
        return_beam=False,
        layer_predictions=0,
    ):
        """Translates one text (returns a `Translation`) or a list (a list).

        Args:
            text_or_texts: str or list of str.
            beam_size: int, 1 = greedy.
            length_penalty: float, GNMT alpha for beam search.
            max_length: most output pieces, at most the model's
                `max_length`; default: `output_length` of each batch (twice
                its sources' padded length). Decoding stops earlier once all
                outputs end.
            n_best: int <= beam_size, hypotheses kept in `Translation.n_best`.
            disabled_heads: `{"encoder"|"decoder"|"cross": [(layer, head)]}`
                heads whose output is zeroed (head ablation).
            return_attention: record every attention head of every step in
                `Translation.attention` (off by default: a bulk translation
                then writes no `(N, H, T, T)` histories it never reads).
            batch_size: int, texts decoded together.
            top_k: int, alternatives recorded per output piece (0: none).
            prefix: pieces forced as the first outputs, then decoding goes on
                freely: target text (tokenized as a translation starts) or a
                list of pieces as in `Translation.target_tokens` (without
                `</s>`). For a list of texts: one prefix for all, or a list
                with one per text (each text, pieces or `None`). An empty
                prefix forces nothing.
            return_beam: with `beam_size > 1`, record the search tree in
                `Translation.beam_steps`.
            layer_predictions: int k: `Translation.layer_predictions` of the
                output (see `score`), from one teacher-forced pass over it
                (equal to the decoding's own states to float rounding).

        Raises:
            ValueError: for a bad argument, an unknown piece in `prefix`, or a
                prefix that leaves no room for the end piece.
        """
        options = dict(
            beam_size=beam_size,
            length_penalty=length_penalty,
            max_length=max_length,
            n_best=n_best,
            disabled_heads=disabled_heads,
            return_attention=return_attention,
            batch_size=batch_size,
            top_k=top_k,
            return_beam=return_beam,
            layer_predictions=layer_predictions,
        )
        if isinstance(text_or_texts, str):
            return self.translate([text_or_texts], prefix=[prefix], **options)[0]
        check_integer("beam_size", beam_size, minimum=1)
        check_integer("n_best", n_best, minimum=1)
        check_integer("batch_size", batch_size, minimum=1)
        if not 1 <= n_best <= beam_size:
            raise InvalidArgumentError(
                f"`n_best` must be between 1 and beam_size={beam_size}. "
                f"Received: n_best={n_best}"
            )
        top_k = self._check_top_k(top_k)
        layer_predictions = self._check_top_k(layer_predictions)
        cap = min(max_length or self.model.max_length, self.model.max_length)
        texts = [clean_text(t) for t in text_or_texts]
        prefixes = self._prefix_ids(prefix, len(texts), cap)
        encoded = [self._encode(t) if t else ([], False) for t in texts]
        results = [None] * len(texts)
        # Sort by length so that a batch pads little, decode, then unsort.
        order = sorted(
            (i for i, (ids, _) in enumerate(encoded) if ids),
            key=lambda i: len(encoded[i][0]),
        )
        for i, (ids, _) in enumerate(encoded):
            if not ids:
                results[i] = self._empty()
        head_masks = self._head_masks(disabled_heads)
        options = (bool(return_attention), top_k, bool(return_beam) and beam_size > 1)
        limits = {}  # The most output pieces of each text's batch.
        # Decoding many texts without attention records or prefixes: the
        # texts of each source length, where they are many enough
        # (`_stream_rows`), stream through rows (inputs, for beam search),
        # each taking the next text as soon as its search is done (the same
        # outputs); the others go in batches.
        bulk = not return_attention and not any(prefixes[i] for i in order)
        if beam_size > 1:  # One hypothesis each, no records.
            bulk = bulk and n_best == 1 and not return_beam and not top_k
        # Every search of this call, run `streams` at a time (`_each`): the
        # texts it decodes, their output limit, a function that returns
        # their translations in that order, and its compiled program. The
        # bulk streams (the longest jobs) come before the batches, and one
        # job of each program before the others (`_firsts_first`).
        work = []
        batched = []
        groups = self._length_groups(order, encoded)
        tail = any(_stream_rows(len(group), batch_size) for group in groups)
        for group in groups:
            slots = _stream_rows(len(group), batch_size, tail) if bulk else 0
            if not slots:
                batched.extend(group)
                continue
            limit = cap
            if max_length is None:
                limit = self.output_length(len(encoded[group[-1]][0]))
            items = [(encoded[i][0], encoded[i][1], prefixes[i]) for i in group]
            for share, decode, program in self._refill(
                items,
                head_masks,
                limit,
                slots,
                top_k,
                beam_size,
                length_penalty,
                encode_rows=batch_size,
            ):
                work.append(([group[j] for j in share], limit, decode, program))
        # A last, partial batch of many takes the full batches' shape:
        # padding rows cost less than compiling a program for it.
        rows = batch_size if len(batched) > batch_size else 1
        for start in range(0, len(batched), batch_size):
            chunk = batched[start : start + batch_size]
            batch = [(encoded[i][0], encoded[i][1], prefixes[i]) for i in chunk]
            limit = cap
            if max_length is None:
                limit = self.output_length(
                    max(len(ids) for ids, _, _ in batch),
                    max(len(prefix_ids) for _, _, prefix_ids in batch),
                )
            search = self._search(beam_size, limit, length_penalty, options)
            decode = functools.partial(
                self._batch_translations,
                search,
                batch,
                head_masks,
                limit,
                beam_size,
                rows,
                n_best,
            )
            work.append((chunk, limit, decode, search))
        work = _firsts_first(work, program=lambda job: id(job[3]))
        outs = self._each(lambda job: job[2](), work)
        for (chunk, limit, _, _), translations in zip(work, outs):
            for i, translation in zip(chunk, translations):
                results[i] = translation
                limits[i] = limit
        if layer_predictions and order:
            # The positions' distributions depend on the decoder inputs only,
            # so an output cut at `max_length` (no end piece) is scored
            # without its last piece: the end piece's position then holds
            # the distribution the last piece was chosen from.
            # The pass is as wide as the search's output limit, so that it
            # compiles one program per search shape, however long the
            # outputs are.
            targets = [
                [p for p in results[i].target_tokens if p != EOS][: limits[i] - 1]
                for i in order
            ]
            scored = self._score(
                [texts[i] for i in order],
                targets,
                top_k=0,
                return_attention=False,
                batch_size=batch_size,
                layer_predictions=layer_predictions,
                widths=[limits[i] for i in order],
            )
            for i, one in zip(order, scored):
                length = len(results[i].target_tokens)
                results[i].layer_predictions = [
                    steps[:length] for steps in one.layer_predictions
                ]
        return results

    def _length_groups(self, order, encoded):
        """`order` (sorted by source length) cut where the padded source
        length changes: the texts that share one compiled source shape."""
        groups = []
        for i in order:
            length = self.padded_length(len(encoded[i][0]))
            if groups and groups[-1][0] == length:
                groups[-1][1].append(i)
            else:
                groups.append((length, [i]))
        return [group for _, group in groups]

    def _refill(
        self,
        items,
        head_masks,
        limit,
        slots,
        top_k=0,
        beam_size=1,
        length_penalty=0.6,
        encode_rows=None,
    ):
        """The searches that translate `items` (`(ids, truncated,
        prefix_ids)` of one padded source length) through `slots` rows
        (`RefillGreedySearch`), or `slots` inputs of `beam_size` hypotheses
        (`RefillBeamSearch`): encoded in batches of `encode_rows` (default
        `slots`), then decoded in one compiled loop per `_REFILL_INPUTS` of
        them. Streams of few rows encode in the batch size of the others,
        so that they compile no encoder programs of their own.

        The items are dealt into `streams` interleaved shares (alike in
        length), each decoded by its own search, so that `_each` runs them
        at once on its threads: a greedy share through `slots` rows, a beam
        search share through `slots // streams` inputs (as many inputs in
        flight as one search, of at least `slots` rows when `beam_size >=
        streams`).

        Returns:
            One `(share, decode, program)` per share: the positions in
            `items` it holds, a function that returns their translations in
            that order, and the compiled search it runs.
        """
        streams = min(self.streams, len(items))
        encode_rows = encode_rows or slots
        if beam_size > 1:
            slots = max(1, slots // streams)
        key = ("encode",)
        if key not in self._searches:
            self._searches[key] = self._compiled(key, encode_inputs)
        encoder = self._searches[key]
        if beam_size == 1:
            key = ("refill", slots, limit, top_k)
            search = RefillGreedySearch(
                slots, limit, self.bos_id, self.eos_id, top_k=top_k
            )
        else:
            key = ("refill", slots, limit, beam_size, float(length_penalty))
            search = RefillBeamSearch(
                slots,
                beam_size,
                limit,
                self.bos_id,
                self.eos_id,
                length_penalty=length_penalty,
            )
        if key not in self._searches:
            self._searches[key] = self._compiled(key, search)
        search = self._searches[key]
        padded = self.padded_length(max(len(ids) for ids, _, _ in items))

        def decode(share):
            # Longest sources first: a stream then ends on its shortest
            # outputs, and its rows run out of texts at about the same step
            # (1,500 en-es test sources: 113 steps instead of 120 for the
            # longer of two greedy shares; beam 4 of 256: 42 instead of 47).
            longest_first = [items[j] for j in reversed(share)]
            return self._refill_share(
                longest_first, encoder, search, head_masks, slots, padded, encode_rows
            )[::-1]

        return [
            (share, functools.partial(decode, share), search)
            for share in (range(s, len(items), streams) for s in range(streams))
        ]

    def _refill_share(
        self, items, encoder, search, head_masks, slots, padded, encode_rows
    ):
        """`_refill`'s translations of one share of its items, in order."""
        translations = []
        for start in range(0, len(items), _REFILL_INPUTS):
            part = items[start : start + _REFILL_INPUTS]
            # M: a power of two times `slots`, the rows after `len(part)`
            # never decoded (zeros).
            M = slots
            while M < len(part):
                M *= 2
            # The sources packed into rows of `padded` pieces (`_pack`), so
            # that the encoder computes few padding pieces: in batches of
            # `encode_rows` rows, one encoder program per padded length.
            lengths = np.array([len(ids) for ids, _, _ in part])
            row, offset, segment, packed_rows = _pack(lengths, padded)
            # Each row's pieces and segment ids, its sources in the order
            # `_pack` placed them (so at their offsets).
            packed = [([], []) for _ in range(packed_rows)]
            for (ids, _, _), r, s in zip(part, row, segment):
                packed[r][0].extend(ids)
                packed[r][1].extend([s] * len(ids))
            encoded = []  # (the inputs in each batch, its outputs)
            for first in range(0, packed_rows, encode_rows):
                batch = packed[first : first + encode_rows]
                (source,), _ = self._pad_batch(
                    [([ids for ids, _ in batch], padded)], min_rows=encode_rows
                )
                segments = np.zeros_like(source)
                for at, (_, ids) in enumerate(batch):
                    segments[at, : len(ids)] = ids
                inside = np.flatnonzero((row >= first) & (row < first + encode_rows))
                # Every batch is sent before any is read (on JAX the encoder
                # runs on while the host copies the batches before it).
                encoded.append((inside, first, encoder(source, head_masks, segments)))
            # Each source's keys and values copied once from its row, into
            # inputs of `padded` columns: N x 2 x (M, H, S, K_d) and (M, S).
            columns = np.arange(padded)
            mask = np.zeros((M, padded), bool)
            mask[: len(part)] = columns[None] < lengths[:, None]
            cross = None
            for inside, first, (batch_cross, _) in encoded:
                batch_cross = [[np.asarray(c) for c in pair] for pair in batch_cross]
                if cross is None:
                    cross = [
                        tuple(np.zeros((M,) + c.shape[1:], c.dtype) for c in pair)
                        for pair in batch_cross
                    ]
                at = (row[inside] - first)[:, None]  # (n, 1)
                spans = np.minimum(offset[inside, None] + columns, padded - 1)
                keep = mask[inside][:, None, :, None]  # (n, 1, S, 1)
                for buffers, pair in zip(cross, batch_cross):
                    for buffer, c in zip(buffers, pair):
                        gathered = c[at, :, spans]  # (n, S, H, K_d)
                        buffer[inside] = gathered.transpose(0, 2, 1, 3) * keep
            out = search(cross, mask, np.int32(len(part)), head_masks)
            out = {k: np.asarray(v) for k, v in out.items()}
            translations.extend(
                self._translation(out, row, item, 1) for row, item in enumerate(part)
            )
        return translations

    def _each(self, fn, jobs):
        """`[fn(job) for job in jobs]`, up to `streams` of them at once on
        threads, each in this thread's `compiling` mode."""
        if self.streams == 1 or len(jobs) < 2:
            return [fn(job) for job in jobs]
        mode = getattr(self._compile_mode, "mode", None)

        def run(job):
            if mode is None:
                return fn(job)
            with self.compiling(mode):
                return fn(job)

        with concurrent.futures.ThreadPoolExecutor(
            min(self.streams, len(jobs))
        ) as pool:
            return list(pool.map(run, jobs))

    def _check_top_k(self, top_k):
        """`top_k`, validated and capped at the vocabulary size."""
        check_integer("top_k", top_k, minimum=0)
        return min(top_k, self.model.target_vocabulary_size)

    def _prefix_ids(self, prefix, count, max_length):
        """One list of forced ids per text (empty: nothing forced)."""
        if prefix is None:
            prefixes = [None] * count
        elif isinstance(prefix, str):
            prefixes = [prefix] * count
        else:
            prefixes = list(prefix)
            if len(prefixes) != count:
                raise InvalidArgumentError(
                    f"`prefix` for {count} texts must be one prefix or a list of "
                    f"{count}. Received a list of {len(prefixes)}"
                )
        ids = []
        for one in prefixes:
            one_ids = [] if one is None else self.target_ids(one, "prefix")
            if len(one_ids) >= max_length:
                raise InvalidArgumentError(
                    f"`prefix` has {len(one_ids)} pieces; at most "
                    f"{max_length - 1} fit before the end piece (max_length="
                    f"{max_length})"
                )
            ids.append(one_ids)
        return ids

    def _empty(self):
        model = self.model
        zeros = {
            "encoder": np.zeros((model.num_encoder_layers, model.num_heads, 0, 0)),
            "decoder": np.zeros((model.num_decoder_layers, model.num_heads, 0, 0)),
            "cross": np.zeros((model.num_decoder_layers, model.num_heads, 0, 0)),
        }
        return Translation("", [], [], [], 0.0, [], False, zeros)

    def padded_length(self, length):
        """The length a sequence of `length` pieces is padded to for a
        compiled program: its bucket (16, 32, 64, ...), at most the model's
        `max_length`."""
        return min(_bucket(length, _LENGTH_BUCKETS), self.model.max_length)

    def output_length(self, source_pieces, prefix_pieces=0):
        """The default most output pieces of a batch whose longest source has
        `source_pieces` pieces and longest forced prefix `prefix_pieces`:
        twice the padded length of the longer of the two (the prefix with
        room for the end piece), at most the model's `max_length`.

        An output longer than twice its padded source is a runaway
        repetition, not a translation: on the Tatoeba test sets of the
        shipped en-es, en-de and en-fr models (1,500 sources each) no
        greedy output is that long. The searches' key/value caches and
        histories are as long as this limit, so short sources decode with
        shorter ones; the limit follows the source bucket, so it adds no
        compiled program to those the source lengths need.
        """
        longest = max(source_pieces, prefix_pieces + 1)
        return min(2 * self.padded_length(longest), self.model.max_length)

    def _pad_batch(self, columns, min_rows=1):
        """Pads one batch for a compiled program: the one place that chooses
        its shapes, so that few programs are compiled.

        Args:
            columns: a list of `(rows, width)`: `rows` a list of id lists
                (one per input), `width` the padded length (`None`: the
                longest row, bucketed and capped at the model's
                `max_length`).
            min_rows: int, pad to at least this many rows (then bucketed).

        Returns:
            `(arrays, padding)`: one `(B, width)` int32 array per column, B
            the batch size bucketed, and `(B,)` bool, True for a padding row.
            A padding row holds one piece (the end piece) in its first
            position, so that no attention row is all masked.
        """
        count = len(columns[0][0])
        padded_batch = _bucket(max(count, min_rows), _BATCH_BUCKETS)
        arrays = []
        for rows, width in columns:
            if width is None:
                longest = max(max(len(row) for row in rows), 1)
                width = self.padded_length(longest)
            array = np.zeros((padded_batch, width), "int32")
            array[count:, 0] = self.eos_id
            for i, row in enumerate(rows):
                array[i, : len(row)] = row
            arrays.append(array)
        return arrays, np.arange(padded_batch) >= count

    def _run_search(self, search, batch, head_masks, max_length, beam_size=1, rows=1):
        """Pads one batch of `(ids, truncated, prefix_ids)` to at least
        `rows` rows and runs `search` (with `beam_size` hypotheses per input
        where its slots are more)."""
        (source, prefix), padding = self._pad_batch(
            [
                ([ids for ids, _, _ in batch], None),
                ([prefix_ids for _, _, prefix_ids in batch], max_length),
            ],
            min_rows=rows,
        )
        prefix_lengths = np.zeros((len(padding),), "int32")
        prefix_lengths[: len(batch)] = [len(p) for _, _, p in batch]
        # Padding rows start finished (and force nothing), so the loop's
        # early stop waits for the real rows only.
        widths = None
        if self.beam_slots and 1 < beam_size <= self.beam_slots:
            # Always given to a shared program, so that it compiles once.
            widths = np.full((len(padding),), beam_size, "int32")
        out = search(source, head_masks, prefix, prefix_lengths, padding, widths)
        return {k: np.asarray(v) for k, v in out.items()}

    def _batch_translations(
        self, search, batch, head_masks, max_length, beam_size, rows, n_best
    ):
        """The translations of one batch (`_run_search`), in order."""
        out = self._run_search(search, batch, head_masks, max_length, beam_size, rows)
        return [
            self._translation(out, row, item, n_best) for row, item in enumerate(batch)
        ]

    def _translation(self, out, row, item, n_best):
        ids, truncated, prefix_ids = item
        if out["tokens"].ndim == 2:  # Greedy: no beam axis.
            hypotheses = [self._hypothesis(out, (row,), ids)]
        else:
            hypotheses = [self._hypothesis(out, (row, k), ids) for k in range(n_best)]
        if "encoder" in out:
            # One copy of the input's encoder map, shared by its hypotheses.
            encoder = out["encoder"][:, row, :, : len(ids), : len(ids)].copy()
            for hypothesis in hypotheses:
                hypothesis.attention = {"encoder": encoder, **hypothesis.attention}
        best = hypotheses[0]
        best.truncated = truncated
        best.n_best = hypotheses[1:]
        for hypothesis in hypotheses:
            hypothesis.prefix_length = len(prefix_ids)
        if "beam_parents" in out:
            best.beam_steps, slots = self._beam_steps(out, row)
            for k, hypothesis in enumerate(hypotheses):
                hypothesis.beam_slot = slots.get(int(out["beam_slots"][row, k]))
        return best

    def _beam_steps(self, out, row):
        """The live hypotheses of every step; `(steps, last-step slot map)`.

        Slots that never held a hypothesis (the K - 1 empty beams of the
        first steps, or while a prefix is forced), as the search recorded
        them in `beam_live`, are left out and the parents renumbered.
        """
        steps, previous = [], None
        for t in range(int(out["steps"])):
            kept, mapping = [], {}
            for slot in range(out["beam_tokens"].shape[-1]):
                if not out["beam_live"][row, t, slot]:
                    continue
                score = float(out["beam_scores"][row, t, slot])
                parent = int(out["beam_parents"][row, t, slot])
                mapping[slot] = len(kept)
                kept.append(
                    {
                        "parent": -1 if previous is None else previous[parent],
                        "piece": self._piece_table[
                            int(out["beam_tokens"][row, t, slot])
                        ],
                        "score": score,
                        "finished": bool(out["beam_finished"][row, t, slot]),
                    }
                )
            steps.append(kept)
            previous = mapping
        return steps, previous or {}

    def _alternatives(self, out, select, length):
        if "alternative_ids" not in out:
            return []
        ids = out["alternative_ids"][select][:length]  # (T, k)
        probs = np.exp(out["alternative_log_probs"][select][:length])  # (T, k)
        table = self._piece_table
        return [
            [(table[i], p) for i, p in zip(step_ids, step_probs)]
            for step_ids, step_probs in zip(ids.tolist(), probs.tolist())
        ]

    def _hypothesis(self, out, select, source_ids):
        tokens = out["tokens"][select]  # (T_max,)
        log_probs = out["log_probs"][select]
        ended = np.flatnonzero(tokens == self.eos_id)
        length = int(ended[0]) + 1 if len(ended) else int(np.sum(tokens != 0))
        output_ids = [int(t) for t in tokens[:length]]
        S = len(source_ids)
        attention = {}
        if "cross" in out:
            # (N, B[, K], H, T, S) -> (N, H, T, S), cut to the real lengths and
            # copied, so that no Translation keeps its batch's buffers alive.
            # The encoder map is the input's (`_translation`).
            def pick(x):
                return x[(slice(None),) + select]

            attention = {
                "decoder": pick(out["decoder"])[:, :, :length, :length].copy(),
                "cross": pick(out["cross"])[:, :, :length, :S].copy(),
            }
        translation = self._make_translation(
            source_ids,
            output_ids,
            log_probs[:length],
            score=float(out["scores"][select]),
            attention=attention,
            alternatives=self._alternatives(out, select, length),
        )
        translation.finished = bool(out["finished"][select])
        return translation

    def _make_translation(
        self, source_ids, output_ids, log_probs, score, attention, alternatives
    ):
        target_tokens = self._pieces(output_ids)
        text_ids = [t for t in output_ids if t != self.eos_id]
        return Translation(
            text=self.tokenizer.decode(text_ids),
            source_tokens=self._pieces(source_ids),
            target_tokens=target_tokens,
            decoder_input_tokens=[BOS] + target_tokens[:-1],
            score=score,
            token_probs=[float(p) for p in np.exp(log_probs)],
            attention=attention,
            alternatives=alternatives,
        )

    # ------------------------------------------------------------ attribute
    def attribute(self, source, target=None, method="integrated_gradients", steps=16):
        """What each source piece and each earlier target piece contributed
        to each output piece (`keras_mha.attribution`).

        Args:
            source: str.
            target: the translation to explain, as text or pieces (as in
                `score`); `None`: the model's own greedy translation.
            method: `"integrated_gradients"` or `"grad_x_input"`.
            steps: integration steps of integrated gradients.

        Returns:
            A `keras_mha.attribution.Attribution` with its pieces.
        """
        from keras_mha.attribution import Attributor

        text = clean_text(source)
        ids, _ = self._encode(text)
        if not ids:
            raise InvalidArgumentError(
                "`source` is empty: there is nothing to attribute."
            )
        if target is None:
            target = self.translate(text, return_attention=False).target_tokens
        labels = self.target_ids(target, allow_unknown=True) + [self.eos_id]
        labels = labels[: self.model.max_length]
        decoder_ids = [self.bos_id] + labels[:-1]
        if not hasattr(self, "_attributor"):
            self._attributor = Attributor(
                self.model, compile=lambda model, fn: self._compiled(("attribute",), fn)
            )
        result = self._attributor(ids, decoder_ids, labels, method, steps)
        result.source_tokens = self._pieces(ids)
        result.target_tokens = self._pieces(labels)
        result.decoder_input_tokens = [BOS] + result.target_tokens[:-1]
        return result

    def trace_layers(self, source_ids, decoder_ids, kind):
        """`keras_mha.head_trace.trace_layers` (how each head of every layer
        of `kind` computes its weights) for one source and its decoder
        inputs, as piece ids, from one compiled pass per kind.

        Both are padded to the model's `max_length` (exact: padded keys are
        masked), so that every request of a kind runs one program; the
        results are cut to the real queries and keys.

        Raises:
            InvalidArgumentError: for an unknown kind or ids longer than
                `max_length`.
        """
        from keras_mha import head_trace

        width = self.model.max_length
        if max(len(source_ids), len(decoder_ids)) > width:
            raise InvalidArgumentError(
                f"At most {width} source pieces and decoder inputs can be traced. "
                f"Received: {len(source_ids)} and {len(decoder_ids)}"
            )
        key = ("trace", str(kind))
        if kind in head_trace.KINDS and key not in self._searches:
            self._searches[key] = self._compiled(
                key,
                lambda model, source, decoder: head_trace.trace_tensors(
                    model, source, decoder, kind
                ),
            )
        source = np.zeros((1, width), "int32")
        source[0, : len(source_ids)] = source_ids
        decoder = np.zeros((1, width), "int32")
        decoder[0, : len(decoder_ids)] = decoder_ids
        traced = head_trace.trace_layers(
            self.model, source, decoder, kind, run=self._searches.get(key)
        )
        queries = len(source_ids) if kind == "encoder" else len(decoder_ids)
        keys = len(decoder_ids) if kind == "decoder" else len(source_ids)
        return [head_trace.cut(t, queries, keys) for t in traced]

    # ------------------------------------------------------------ score
    def score(
        self,
        source,
        target,
        top_k=5,
        return_attention=True,
        batch_size=64,
        layer_predictions=0,
        disabled_heads=None,
    ):
        """Scores a given translation of `source` in one teacher-forced pass.

        Args:
            source: str, or a list of str.
            target: the translation, as text or as a list of pieces (as in
                `Translation.target_tokens`, with or without the end piece);
                for a list of sources, a list with one target per source.
                The end piece is always scored.
            top_k: int, the pieces the model preferred at each position.
            return_attention: bool.
            batch_size: int, pairs scored together.
            layer_predictions: int k: record, for every position, the k
                pieces each decoder layer's output would predict through the
                final normalisation and the output projection (logit lens),
                in `Translation.layer_predictions`.
            disabled_heads: heads whose output is zeroed, as in `translate`.

        Returns:
            A `Translation` (a list for a list of sources) whose `text` and
            `target_tokens` are the given target, with `token_probs`,
            `score` (sum of log-probabilities), `alternatives` and attention.

        Raises:
            ValueError: for an unknown piece, or a target longer than the
                model's `max_length` pieces (the end piece included).
        """
        one = isinstance(source, str)
        scored = self._score(
            [source] if one else source,
            [target] if one else target,
            top_k,
            return_attention,
            batch_size,
            layer_predictions,
            disabled_heads,
        )
        return scored[0] if one else scored

    def _score(
        self,
        source,
        target,
        top_k,
        return_attention,
        batch_size,
        layer_predictions,
        disabled_heads=None,
        widths=None,
    ):
        """`score` of lists; `widths`: one least padded length per pair (a
        batch is padded to the largest of its pairs'), or `None`."""
        targets = list(target)
        if len(targets) != len(source):
            raise InvalidArgumentError(
                f"`target` must have one entry per source: {len(source)} "
                f"sources, {len(targets)} targets"
            )
        top_k = self._check_top_k(top_k)
        layer_predictions = self._check_top_k(layer_predictions)
        check_integer("batch_size", batch_size, minimum=1)
        limit = self.model.max_length
        items = []
        for text, one_target in zip(source, targets):
            ids, truncated = self._encode(clean_text(text))
            labels = self.target_ids(one_target, allow_unknown=True) + [self.eos_id]
            if len(labels) > limit:
                raise InvalidArgumentError(
                    f"`target` has {len(labels)} pieces with the end piece; the "
                    f"model scores at most max_length={limit}"
                )
            items.append((ids, truncated, labels))
        asked = (top_k, bool(return_attention), layer_predictions)
        recorded = asked
        if self.score_records:
            k, m = self.score_records
            if top_k <= k and layer_predictions <= m:
                recorded = (k, True, m)
        scorer = self._scorer(*recorded)
        head_masks = self._head_masks(disabled_heads)
        results = []
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            width = max(widths[start : start + batch_size]) if widths else 0
            out = self._run_scorer(scorer, batch, head_masks, width)
            out = _keep_asked(out, *asked)
            for row, (ids, truncated, labels) in enumerate(batch):
                S, T = len(ids), len(labels)
                attention = {}
                if return_attention:
                    attention = {
                        "encoder": out["encoder"][:, row, :, :S, :S].copy(),
                        "decoder": out["decoder"][:, row, :, :T, :T].copy(),
                        "cross": out["cross"][:, row, :, :T, :S].copy(),
                    }
                log_probs = out["log_probs"][row, :T]
                translation = self._make_translation(
                    ids,
                    labels,
                    log_probs,
                    score=float(np.sum(log_probs)),
                    attention=attention,
                    alternatives=self._alternatives(out, (row,), T),
                )
                translation.truncated = truncated
                if layer_predictions:
                    translation.layer_predictions = [
                        [
                            [
                                (self._piece_table[int(i)], float(np.exp(q)))
                                for i, q in zip(ids_t, log_probs_t)
                            ]
                            for ids_t, log_probs_t in zip(
                                out["layer_ids"][n, row, :T],
                                out["layer_log_probs"][n, row, :T],
                            )
                        ]
                        for n in range(out["layer_ids"].shape[0])
                    ]
                results.append(translation)
        return results

    def _run_scorer(self, scorer, batch, head_masks, width=0):
        """Pads one batch of `(ids, truncated, labels)` and runs `scorer`.

        Source and target are padded to one length bucket, the larger of
        theirs (and of `width`), so that a pass compiles one program per
        bucket rather than one per pair of buckets."""
        longest = max(max(len(ids), len(labels)) for ids, _, labels in batch)
        longest = max(longest, width)
        width = self.padded_length(longest)
        (source, decoder_inputs, labels), _ = self._pad_batch(
            [
                ([ids for ids, _, _ in batch], width),
                ([[self.bos_id] + labels[:-1] for _, _, labels in batch], width),
                ([labels for _, _, labels in batch], width),
            ]
        )
        out = scorer(source, decoder_inputs, labels, head_masks)
        return {k: np.asarray(v) for k, v in out.items()}
