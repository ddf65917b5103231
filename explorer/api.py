"""The public endpoints: `/translate`, `/score`, `/align`, `/attention`.

Each is a plain function with type hints and a docstring: Gradio turns them
into API endpoints (and, with `GRADIO_MCP_SERVER=True`, into MCP tools whose
descriptions are these docstrings, one line per argument).
"""

import numpy as np

from explorer import exports, payload
from explorer.service import (
    EMPTY_INPUT,
    TRUNCATED_INPUT,
    friendly_errors,
    user_error,
)
from keras_mha import alignment
from keras_mha.errors import InvalidArgumentError
from keras_mha.translator import ATTENTION_KINDS


def facts(translation, seconds, model, beam):
    """JSON-able facts about a translation (what `/translate` returns)."""
    if not translation.source_tokens:
        message = EMPTY_INPUT
    elif translation.truncated:
        message = TRUNCATED_INPUT
    else:
        message = ""
    return {
        "model": model,
        "decoding": "greedy" if beam == 1 else f"beam search, beam {beam}",
        "seconds": round(seconds, 3),
        "truncated": translation.truncated,
        "message": message,
        "score": round(translation.score, 4),
        "source_tokens": translation.source_tokens,
        "target_tokens": translation.target_tokens,
        "token_probs": [round(p, 4) for p in translation.token_probs],
        "alternatives": payload.alternatives(translation),
        "prefix_length": translation.prefix_length,
    }


def make_api(service):
    """The endpoint functions, bound to a `Service`."""

    @friendly_errors
    def translate(
        text: str,
        model: str,
        decoding: str = "greedy",
        beam_size: int = 4,
        top_k: int = 5,
        prefix: str = "",
    ) -> tuple[str, dict]:
        """Translates a text with one of the app's models.

        Args:
            text: the text to translate.
            model: model name, e.g. "en-es" (see the model dropdown).
            decoding: "greedy" or "beam" (beam search).
            beam_size: number of beams for beam search, 2 to 8.
            top_k: candidates to report for each output piece, 0 to 10.
            prefix: text the translation must start with ("" for none).

        Returns:
            The translation and a dict of facts: decoding, seconds,
            source_tokens, target_tokens, token_probs (one per output piece),
            score, alternatives (one list of [piece, probability] per output
            piece, best first), prefix_length, truncated and a message.
        """
        translation, seconds, beam = service.translate(
            text, model, decoding, beam_size, top_k=top_k, prefix=prefix
        )
        return translation.text, facts(translation, seconds, model, beam)

    @friendly_errors
    def score(source: str, target: str, model: str) -> dict:
        """Scores a given translation: how likely the model finds each piece.

        Args:
            source: the text in the source language.
            target: a translation of it, e.g. one a person wrote.
            model: model name, e.g. "en-es".

        Returns:
            A dict with target_tokens (the translation's pieces, the end
            piece included), token_probs (the model's probability of each),
            score (the sum of their log-probabilities) and alternatives (the
            model's five most likely pieces at each position, as
            [piece, probability] lists).
        """
        scored, _ = service.score(source, target, model)
        return {
            "target_tokens": scored.target_tokens,
            "token_probs": [round(p, 4) for p in scored.token_probs],
            "score": round(float(scored.score), 4),
            "alternatives": payload.alternatives(scored),
        }

    @friendly_errors
    def attribute(
        source: str,
        target: str,
        model: str,
        method: str = "integrated_gradients",
        steps: int = 16,
    ) -> dict:
        """Why each output piece was chosen: the contribution of every source
        piece and every earlier output piece, from gradients.

        Args:
            source: the text in the source language.
            target: its translation; "" explains the model's own translation.
            model: model name, e.g. "en-es".
            method: "integrated_gradients" (16 steps by default, complete:
                a piece's contributions sum to its log-probability minus
                that of an all-zero embedding) or "grad_x_input" (faster).
            steps: integration steps of integrated gradients, 1 to 64.

        Returns:
            A dict with source_tokens, target_tokens, decoder_input_tokens;
            source (one row per target piece, one value per source piece)
            and prefix (one value per decoder input) as shares of the row's
            absolute total; signed_source and signed_prefix as computed;
            source_share per target piece; log_probs; completeness_error.
        """
        found, seconds = service.attribute(source, target, model, method, steps)
        out = payload.attribution_payload(None, found, seconds)
        tokens = out.pop("tokens")
        out.pop("serial")
        return {
            "source_tokens": tokens["source"],
            "target_tokens": tokens["target"],
            "decoder_input_tokens": tokens["decoder_input"],
            **out,
        }

    @friendly_errors
    def head(
        source: str,
        target: str,
        model: str,
        kind: str = "cross",
        layer: int = 0,
        head: int = 0,
        query: int = 0,
    ) -> dict:
        """How one attention head computes one row of its weights, stage by
        stage, with the model's own layers: the query vector, q, the keys,
        q·k per key and per dimension, ÷√d_k, the mask, the softmax (under
        "weights"), the values, the head's output, the concatenation, W_O and
        the residual.

        Args:
            source: the text in the source language.
            target: its translation; "" uses the model's own translation.
            model: model name, e.g. "en-es".
            kind: "encoder", "decoder" (self-attention) or "cross".
            layer: layer index, from 0.
            head: head index, from 0.
            query: the query position: a source piece for "encoder", a
                decoder input (<s>, then the translation) otherwise.

        Returns:
            A dict: kind, layer, head, query, query_token, key_tokens, d_k,
            one list of numbers per stage (x, normalized, q, keys, products,
            dots, scaled, mask, weights, values, head_output, concat, output,
            residual, block_output) and "stages" with each stage's label,
            formula and shape in the model's sizes.
        """
        stages, translation, _ = service.head(
            source, target, model, kind, layer, head, query
        )
        out = payload.head_payload(None, stages, translation, kind, layer, head, query)
        out.pop("serial")
        return out

    @friendly_errors
    def align(
        source: str, target: str, model: str, method: str = alignment.DEFAULT_METHOD
    ) -> dict:
        """Word alignment between a text and its translation, from word
        deletion or attention.

        Args:
            source: the text in the source language.
            target: its translation; "" aligns the model's own translation.
            model: model name, e.g. "en-es".
            method: "deletion" (the model again without each source word:
                the word whose removal lowers a target word's probability
                most), or from attention "average", "shift-att", "layer:<n>"
                or "head:<layer>:<head>", optionally followed by "+union"
                (also each source word's most linked target word), "+inter"
                (only links both ways) or "+p0.3" (every link of weight >=
                0.3), maybe after "+diag" (a prior toward the usual word
                order); the default, "deletion+diag+inter", has the lowest
                error on human gold links.

        Returns:
            A dict with source_words, target_words (whitespace-separated
            words), the target used, and links in Pharaoh form: "i-j" pairs
            separated by spaces, i a source word index, j a target word index.
        """
        if not str(source or "").strip():
            raise user_error("Type a sentence to align.")
        if str(target or "").strip():
            translation, _ = service.score(source, target, model)
        else:
            translation = service.translate(source, model).translation
        deletion = None
        try:
            alignment.parse_links(str(method))  # A bad method: no model pass.
            if alignment.is_deletion(method):
                deletion = service.word_deletion(translation, model)
            links = (
                set()  # No source words: nothing to link.
                if alignment.is_deletion(method) and deletion is None
                else alignment.word_alignment(translation, str(method), deletion)
            )
        except InvalidArgumentError as error:
            raise user_error(error) from error
        return {
            "source_words": alignment.source_words(translation),
            "target_words": alignment.target_words(translation),
            "target": translation.text,
            "method": str(method),
            "links": alignment.to_pharaoh(links),
        }

    @friendly_errors
    def attention(
        text: str, model: str, kind: str = "cross", layer: int = 0, head: int = 0
    ) -> dict:
        """Greedy-translates a text and returns one attention head's weights.

        Args:
            text: the text to translate.
            model: model name, e.g. "en-es".
            kind: "encoder", "decoder" or "cross" attention.
            layer: layer index, from 0.
            head: head index, from 0.

        Returns:
            A dict with the translation, row_tokens (queries), column_tokens
            (keys) and attention: a list of rows, each summing to 1.
        """
        if kind not in ATTENTION_KINDS:
            raise user_error(f"Unknown kind {kind!r}: one of {ATTENTION_KINDS}.")
        translation = service.translate(text, model).translation
        weights, rows, cols = exports.head_view(translation, kind, merge=False)
        num_layers, num_heads = weights.shape[:2]
        if not (0 <= int(layer) < num_layers and 0 <= int(head) < num_heads):
            raise user_error(
                f"Layer {int(layer)}, head {int(head)} does not exist: the model "
                f"has {num_layers} layers of {num_heads} heads."
            )
        return {
            "translation": translation.text,
            "kind": kind,
            "layer": int(layer),
            "head": int(head),
            "row_tokens": rows,
            "column_tokens": cols,
            "attention": np.round(weights[int(layer), int(head)], 5).tolist(),
        }

    return {
        "translate": translate,
        "score": score,
        "align": align,
        "attention": attention,
        "attribute": attribute,
        "head": head,
    }
