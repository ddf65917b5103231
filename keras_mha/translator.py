"""Translator: a trained model folder (model + tokenizer + card) behind one
`translate()` call that returns the text, the subword pieces and every
attention head.

Shape legend (numpy outputs): N layers, H heads, S source pieces, T target
pieces. Rows are queries, columns are keys.
"""

import dataclasses
import json
import pathlib
import re
import unicodedata

import keras
import numpy as np
import sentencepiece

from keras_mha.decoding import SearchModel

ATTENTION_KINDS = ("encoder", "decoder", "cross")
BOS, EOS = "<s>", "</s>"
# Padded batch sizes and source lengths: each (batch, length) pair compiles
# once, so the buckets are few; the output buffer is always the model's
# `max_length` and the loop stops as soon as every sequence has ended.
_BATCH_BUCKETS = (1, 4, 16, 64)
_LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
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


def clean_text(text):
    """Normalizes user input: NFKC, no control characters, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def _bucket(value, buckets):
    return next((b for b in buckets if b >= value), value)


class Translator:
    """A trained translation model ready to translate.

    Args:
        model: a `keras_mha.Transformer`.
        tokenizer: a `sentencepiece.SentencePieceProcessor` (the same
            `spm.model` the training pipeline used through keras-hub).
        card: dict of model-card facts (`metrics.json`), may be empty.
        name: display name, e.g. "en-es".

    Example:

    >>> translator = Translator.load("saved_models/en-es")  # doctest: +SKIP
    >>> translator.translate("How are you?").text  # doctest: +SKIP
    '¿Cómo estás?'
    """

    def __init__(self, model, tokenizer, card=None, name="model"):
        self.model = model
        self.tokenizer = tokenizer
        self.card = card or {}
        self.name = name
        self.bos_id = tokenizer.bos_id()
        self.eos_id = tokenizer.eos_id()
        self._searches = {}

    @classmethod
    def load(cls, path):
        """Loads `model.keras`, `spm.model` and `metrics.json` from a folder.

        Raises:
            FileNotFoundError / ValueError with the folder in the message.
        """
        path = pathlib.Path(path)
        for required in ("model.keras", "spm.model"):
            if not (path / required).is_file():
                raise FileNotFoundError(f"{path}: missing {required}")
        model = keras.saving.load_model(path / "model.keras", safe_mode=True)
        tokenizer = sentencepiece.SentencePieceProcessor(
            model_file=str(path / "spm.model")
        )
        if tokenizer.get_piece_size() != model.target_vocabulary_size:
            raise ValueError(
                f"{path}: tokenizer has {tokenizer.get_piece_size()} pieces, the "
                f"model {model.target_vocabulary_size}"
            )
        card = {}
        if (path / "metrics.json").is_file():
            card = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        return cls(model, tokenizer, card, name=path.name)

    # ------------------------------------------------------------ helpers
    @property
    def max_source_length(self):
        return self.model.max_length

    def warmup(self, beam_sizes=(1,), batch_sizes=(1,), source_lengths=(16,)):
        """Compiles the searches for these shapes ahead of the first request."""
        for beam_size in beam_sizes:
            for batch_size in batch_sizes:
                for length in source_lengths:
                    self.translate(["a " * (length - 2)] * batch_size, beam_size)

    def _search(self, beam_size, max_length, length_penalty, return_attention):
        key = (beam_size, max_length, float(length_penalty), return_attention)
        if key not in self._searches:
            self._searches[key] = SearchModel(
                self.model,
                beam_size=beam_size,
                max_length=max_length,
                bos_id=self.bos_id,
                eos_id=self.eos_id,
                length_penalty=length_penalty,
                return_attention=return_attention,
            )
        return self._searches[key]

    def _head_masks(self, disabled_heads, batch_size):
        model = self.model
        shapes = {
            "encoder": (model.num_encoder_layers, model.num_heads),
            "decoder": (model.num_decoder_layers, model.num_heads),
            "cross": (model.num_decoder_layers, model.num_heads),
        }
        masks = {k: np.ones(s, "float32") for k, s in shapes.items()}
        for kind, heads in (disabled_heads or {}).items():
            if kind not in masks:
                raise ValueError(
                    f"Unknown attention kind {kind!r} in `disabled_heads`; "
                    f"expected one of {ATTENTION_KINDS}"
                )
            for layer, head in heads:
                if not (0 <= layer < shapes[kind][0] and 0 <= head < shapes[kind][1]):
                    raise ValueError(
                        f"`disabled_heads[{kind!r}]` has (layer={layer}, "
                        f"head={head}); the model has {shapes[kind][0]} layers "
                        f"of {shapes[kind][1]} heads"
                    )
                masks[kind][layer, head] = 0.0
        return {
            k: np.broadcast_to(m, (batch_size,) + m.shape).copy()
            for k, m in masks.items()
        }

    def _encode(self, text):
        """Source ids, cut to the model's length; `(ids, truncated)`."""
        ids = self.tokenizer.encode(text)
        limit = self.max_source_length
        return ids[:limit], len(ids) > limit

    def _pieces(self, ids):
        return [self.tokenizer.id_to_piece(int(i)) for i in ids]

    # ------------------------------------------------------------ translate
    def translate(
        self,
        text_or_texts,
        beam_size=1,
        length_penalty=0.6,
        max_length=None,
        n_best=1,
        disabled_heads=None,
        return_attention=True,
        batch_size=64,
    ):
        """Translates one text (returns a `Translation`) or a list (a list).

        Args:
            text_or_texts: str or list of str.
            beam_size: int, 1 = greedy.
            length_penalty: float, GNMT alpha for beam search.
            max_length: most output pieces; default (and cap): the model's
                `max_length`. Decoding stops earlier once all outputs end.
            n_best: int ≤ beam_size, hypotheses kept in `Translation.n_best`.
            disabled_heads: `{"encoder"|"decoder"|"cross": [(layer, head)]}`
                heads whose output is zeroed (head ablation).
            return_attention: record attention (off is a little faster).
            batch_size: int, texts decoded together.
        """
        if isinstance(text_or_texts, str):
            return self.translate(
                [text_or_texts],
                beam_size,
                length_penalty,
                max_length,
                n_best,
                disabled_heads,
                return_attention,
                batch_size,
            )[0]
        if not 1 <= n_best <= beam_size:
            raise ValueError(
                f"`n_best` must be between 1 and beam_size={beam_size}. "
                f"Received: n_best={n_best}"
            )
        texts = [clean_text(t) for t in text_or_texts]
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
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = [encoded[i] for i in chunk]
            for i, translation in zip(
                chunk,
                self._translate_batch(
                    batch,
                    beam_size,
                    length_penalty,
                    max_length,
                    n_best,
                    disabled_heads,
                    return_attention,
                ),
            ):
                results[i] = translation
        return results

    def _empty(self):
        model = self.model
        zeros = {
            "encoder": np.zeros((model.num_encoder_layers, model.num_heads, 0, 0)),
            "decoder": np.zeros((model.num_decoder_layers, model.num_heads, 0, 0)),
            "cross": np.zeros((model.num_decoder_layers, model.num_heads, 0, 0)),
        }
        return Translation("", [], [], [], 0.0, [], False, zeros)

    def _translate_batch(
        self,
        batch,
        beam_size,
        length_penalty,
        max_length,
        n_best,
        disabled_heads,
        return_attention,
    ):
        longest = max(len(ids) for ids, _ in batch)
        source_length = min(_bucket(longest, _LENGTH_BUCKETS), self.max_source_length)
        max_length = min(max_length or self.model.max_length, self.model.max_length)
        padded_batch = _bucket(len(batch), _BATCH_BUCKETS)
        source = np.zeros((padded_batch, source_length), "int32")
        for row, (ids, _) in enumerate(batch):
            source[row, : len(ids)] = ids
        inputs = {"encoder_inputs": source}
        inputs.update(self._head_masks(disabled_heads, padded_batch))
        search = self._search(beam_size, max_length, length_penalty, return_attention)
        out = search.predict_on_batch(inputs)
        out = {k: np.asarray(v) for k, v in out.items()}
        translations = []
        for row, (ids, truncated) in enumerate(batch):
            if beam_size == 1:
                hypotheses = [self._hypothesis(out, row, None, ids)]
            else:
                hypotheses = [self._hypothesis(out, row, k, ids) for k in range(n_best)]
            best = hypotheses[0]
            best.truncated = truncated
            best.n_best = hypotheses[1:] if n_best > 1 else []
            translations.append(best)
        return translations

    def _hypothesis(self, out, row, beam, source_ids):
        select = (row,) if beam is None else (row, beam)
        tokens = out["tokens"][select]  # (T_max,)
        log_probs = out["log_probs"][select]
        ended = np.flatnonzero(tokens == self.eos_id)
        length = int(ended[0]) + 1 if len(ended) else int(np.sum(tokens != 0))
        output_ids = [int(t) for t in tokens[:length]]
        text_ids = [t for t in output_ids if t != self.eos_id]
        score = (
            float(out["scores"][select])
            if "scores" in out
            else float(np.sum(log_probs[:length]))
        )
        S = len(source_ids)
        attention = {}
        if "cross" in out:
            # (N, B[, K], H, T, S) -> (N, H, T, S), cut to the real lengths.
            def pick(x):
                return x[(slice(None),) + select]

            attention = {
                "encoder": pick(out["encoder"])[:, :, :S, :S],
                "decoder": pick(out["decoder"])[:, :, :length, :length],
                "cross": pick(out["cross"])[:, :, :length, :S],
            }
        target_tokens = self._pieces(output_ids)
        return Translation(
            text=self.tokenizer.decode(text_ids),
            source_tokens=self._pieces(source_ids),
            target_tokens=target_tokens,
            decoder_input_tokens=[BOS] + target_tokens[:-1],
            score=score,
            token_probs=[float(p) for p in np.exp(log_probs[:length])],
            attention=attention,
        )
