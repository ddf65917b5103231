"""Translations as the compact JSON the browser draws every view from.

The page receives one payload per translation and draws the attention,
token lines, steps, beam tree, alignments and head statistics from it,
without asking the server again while the visitor moves through heads,
layers and steps. Attention weights travel compactly: as integers in
`[0, SCALE]` (four decimals), little-endian uint16, base64, one string per
kind holding every head's row-major `(rows, cols)` map, layer by layer
(`decode_attention` reads them back; the page decodes each kind once).

Shape legend: N layers, H heads, S source pieces, T target pieces.
"""

import base64
import math
import unicodedata

import numpy as np

from keras_mha import alignment, plots
from keras_mha.tokens import CONTROL_PIECES, WORD_BOUNDARY, merge_labels, word_groups
from keras_mha.translator import ATTENTION_KINDS

SCALE = 10_000
# Queries and keys of each kind: which token list labels rows and columns.
AXES = {
    "encoder": ("source", "source"),
    "decoder": ("target", "decoder"),
    "cross": ("target", "source"),
}


def _round(value, digits=4):
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def tokens(translation):
    """`{"source", "target", "decoder"}` piece lists."""
    return {
        "source": list(translation.source_tokens),
        "target": list(translation.target_tokens),
        "decoder": list(translation.decoder_input_tokens),
    }


def groups(pieces):
    """Word groups (piece indices) and their labels, for merging in the page."""
    word_indices = word_groups(pieces)
    return {"groups": word_indices, "labels": merge_labels(pieces, word_indices)}


def attention(translation, kinds=ATTENTION_KINDS):
    """`{kind: base64 string}` (see the module docstring) and the `(N, H)`
    shapes."""
    weights, shapes = {}, {}
    for kind in kinds:
        array = np.asarray(translation.attention.get(kind, np.zeros((0, 0, 0, 0))))
        num_layers, num_heads = array.shape[:2]
        shapes[kind] = [int(num_layers), int(num_heads)]
        scaled = np.rint(np.clip(array, 0.0, 1.0) * SCALE).astype("<u2")
        weights[kind] = base64.b64encode(scaled.tobytes()).decode("ascii")
    return weights, shapes


def decode_attention(value, kind):
    """A payload's attention of `kind` as `(N, H, rows * cols)` floats."""
    N, H = value["shape"][kind]
    data = np.frombuffer(base64.b64decode(value["attention"][kind]), "<u2")
    return data.reshape(N, H, -1).astype("float64") / value["scale"]


def alternatives(translation):
    """One list of `[piece, probability]` per output piece, best first."""
    return [
        [[piece, _round(prob)] for piece, prob in step]
        for step in translation.alternatives
    ]


def _is_punctuation(piece):
    text = piece.replace(WORD_BOUNDARY, "")
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def _key_share(array, keys):
    """Mean over queries of the weight on the marked keys: `(N, H)`."""
    marked = np.array(keys, dtype=bool)
    if array.shape[-2] == 0 or not marked.any():
        return np.zeros(array.shape[:2])
    return array[..., marked].sum(axis=-1).mean(axis=-1)


def _f1(found, reference):
    if not found and not reference:
        return 1.0
    overlap = len(found & reference)
    return 2 * overlap / (len(found) + len(reference))


def alignment_methods(translation, measured_aer=None):
    """Method ids with labels: the word-deletion methods (where the source
    has words), the library's attention methods, each layer, each head; a
    label carries the method's AER on human gold links where it was
    measured for the model."""
    num_layers, num_heads = np.shape(translation.attention["cross"])[:2]
    methods = []
    if alignment.source_words(translation):
        methods += [(m, m) for m in alignment.DELETION_METHODS]
    methods += [(m, m) for m in alignment.ALIGNMENT_METHODS]
    methods += [(f"layer:{n}", f"layer {n} (mean of heads)") for n in range(num_layers)]
    methods += [
        (f"head:{n}:{h}", f"layer {n}, head {h}")
        for n in range(num_layers)
        for h in range(num_heads)
    ]
    measured_aer = measured_aer or {}
    return [
        (m, f"{label} · AER {measured_aer[m]}" if m in measured_aer else label)
        for m, label in methods
    ]


def default_alignment_method(translation, measured_aer=None):
    """The menu's method with the lowest measured AER for the model, else the
    library's default (the attention default for a source without words)."""
    ids = [m for m, _ in alignment_methods(translation)]
    measured = {m: aer for m, aer in (measured_aer or {}).items() if m in ids}
    if measured:
        return min(measured, key=measured.get)
    return (
        alignment.DEFAULT_METHOD
        if alignment.DEFAULT_METHOD in ids
        else (alignment.ATTENTION_METHOD)
    )


def alignments(translation, measured_aer=None):
    """Word alignments of every method, as Pharaoh text (`i-j`: source word
    `i`, target word `j`). The word-deletion methods come with `"links":
    None`: they score the source again without each word, which the page asks
    for only when it shows one of them (`deletion_links`)."""
    methods = alignment_methods(translation, measured_aer)
    links = {
        method: alignment.word_alignment(translation, method)
        for method, _ in methods
        if not alignment.is_deletion(method)
    }
    return {
        "source_words": alignment.source_words(translation),
        "target_words": alignment.target_words(translation),
        "default": default_alignment_method(translation, measured_aer),
        "measured": bool(measured_aer),
        "methods": [
            {
                "id": method,
                "label": label,
                "aer": (measured_aer or {}).get(method),
                "links": (
                    alignment.to_pharaoh(links[method]) if method in links else None
                ),
            }
            for method, label in methods
        ],
    }, links


def deletion_links(serial, translation, deletion):
    """`{"serial", "methods": {method: Pharaoh text}}`: the word-deletion
    methods' links for the translation of payload `serial`, from its
    `keras_mha.deletion.WordDeletion` (`None`: no source words, no links)."""
    return {
        "serial": serial,
        "methods": {
            method: alignment.to_pharaoh(
                alignment.word_alignment(translation, method, deletion)
                if deletion is not None
                else set()
            )
            for method in alignment.DELETION_METHODS
        },
    }


def head_statistics(translation, links=None):
    """Per head of every kind: the `keras_mha.plots` statistics, the weight
    on `<s>`/`</s>` and on punctuation (attention sinks), and, for
    cross-attention, the F1 agreement of the head's own word alignment with
    the default alignment."""
    pieces = tokens(translation)
    rows = []
    reference = (links or {}).get(alignment.ATTENTION_METHOD)
    for kind in ATTENTION_KINDS:
        array = np.asarray(translation.attention[kind], dtype="float64")
        keys = pieces[AXES[kind][1]]
        special = _key_share(array, [p in CONTROL_PIECES for p in keys])
        punctuation = _key_share(array, [_is_punctuation(p) for p in keys])
        for row in plots.head_statistics(array):
            layer, head = row["layer"], row["head"]
            agreement = None
            if kind == "cross" and reference is not None:
                found = links.get(f"head:{layer}:{head}", set())
                agreement = _round(_f1(found, reference), 3)
            rows.append(
                {
                    "kind": kind,
                    "layer": layer,
                    "head": head,
                    "entropy": _round(row["entropy"], 3),
                    "max_weight": _round(row["max_weight"], 3),
                    "diagonality": _round(row["diagonality"], 3),
                    "previous_token": _round(row["previous_token"], 3),
                    "to_special": _round(special[layer, head], 3),
                    "to_punctuation": _round(punctuation[layer, head], 3),
                    "alignment_agreement": agreement,
                }
            )
    return rows


def _path(steps, slot):
    """`[(step, slot), ...]` from the first step to `slot` of the last."""
    path = []
    for t in range(len(steps) - 1, -1, -1):
        if slot is None or not 0 <= slot < len(steps[t]):
            break
        path.append((t, slot))
        slot = steps[t][slot]["parent"]
    return path[::-1]


def beam(hypotheses, shown):
    """The search tree: per step, `[parent, piece, score, finished, owner]`
    with `owner` the index of the hypothesis whose path passes through it
    (the best one first), or -1 for a dropped hypothesis."""
    steps = hypotheses[0].beam_steps
    if not steps:
        return None
    owners = {}
    for index in range(len(hypotheses) - 1, -1, -1):  # The best wins ties.
        for node in _path(steps, hypotheses[index].beam_slot):
            owners[node] = index
    return {
        "steps": [
            [
                [
                    node["parent"],
                    node["piece"],
                    _round(node["score"], 3),
                    int(bool(node["finished"])),
                    owners.get((t, k), -1),
                ]
                for k, node in enumerate(step)
            ]
            for t, step in enumerate(steps)
        ],
        "hypotheses": [
            {
                "text": h.text,
                "score": _round(h.score, 3),
                "pieces": len(h.target_tokens),
            }
            for h in hypotheses
        ],
        "shown": shown,
    }


def translation_payload(state, info=""):
    """Everything the views draw for the hypothesis `state` shows."""
    translation = state.translation
    weights, shapes = attention(translation)
    aligned, links = alignments(translation, state.measured_aer)
    pieces = tokens(translation)
    request = state.request
    return {
        "serial": state.serial,
        "model": request.model,
        "text": request.text,
        "decoding": request.decoding,
        "beam_size": request.beam_size,
        "translation": translation.text,
        "info": info,
        "tokens": pieces,
        "words": {name: groups(p) for name, p in pieces.items()},
        "probs": [_round(p) for p in translation.token_probs],
        "score": _round(translation.score),
        "prefix_length": int(translation.prefix_length),
        "alternatives": alternatives(translation),
        "layer_predictions": [
            [[[piece, _round(prob)] for piece, prob in step] for step in steps]
            for steps in translation.layer_predictions
        ],
        "scale": SCALE,
        "shape": shapes,
        "attention": weights,
        "alignment": aligned,
        "stats": head_statistics(translation, links),
        "beam": beam(state.hypotheses, state.shown),
    }


def log_prob(translation):
    """Sum of the output pieces' log-probabilities (not length-normalized,
    so that translations from any search compare)."""
    probs = np.maximum(np.asarray(translation.token_probs, "float64"), 1e-30)
    return float(np.sum(np.log(probs)))


def pieces_summary(translation):
    """The output of one translation, for side-by-side views."""
    return {
        "text": translation.text,
        "pieces": list(translation.target_tokens),
        "probs": [_round(p) for p in translation.token_probs],
        "log_prob": _round(log_prob(translation)),
        "prefix_length": int(translation.prefix_length),
    }


def whatif_payload(serial, original, forced, step, piece):
    """The original translation beside the one forced to start differently."""
    return {
        "serial": serial,
        "step": int(step),
        "piece": str(piece),
        "original": pieces_summary(original),
        "forced": pieces_summary(forced),
    }


def score_payload(serial, scored, model_translation=None):
    """A visitor's translation as the model scores it, with its attention."""
    weights, shapes = attention(scored, kinds=("cross",))
    pieces = tokens(scored)
    preferred = [
        None if not step or step[0][0] == piece else [step[0][0], _round(step[0][1])]
        for piece, step in zip(scored.target_tokens, scored.alternatives)
    ]
    return {
        "serial": serial,
        "tokens": pieces,
        "words": {name: groups(p) for name, p in pieces.items()},
        "probs": [_round(p) for p in scored.token_probs],
        "log_prob": _round(log_prob(scored)),
        "alternatives": alternatives(scored),
        "preferred": preferred,
        "model_translation": model_translation.text if model_translation else None,
        "model_log_prob": (
            _round(log_prob(model_translation)) if model_translation else None
        ),
        "scale": SCALE,
        "shape": shapes,
        "attention": weights,
    }


def importance_payload(serial, drops, seconds=None):
    """Each head's importance by ablation for the browser: one entry per
    head, the drop in the translation's log-probability (nats) when it is
    switched off."""
    return {
        "serial": serial,
        "seconds": None if seconds is None else round(seconds, 3),
        "score": round(float(drops["score"]), 4),
        "heads": [
            {"kind": kind, "layer": layer, "head": head, "drop": round(float(d), 4)}
            for kind in ATTENTION_KINDS
            for (layer, head), d in np.ndenumerate(drops[kind])
        ],
    }


def attribution_payload(serial, found, seconds=None):
    """An `Attribution` for the browser: per output piece, the contribution
    of every source piece and every decoder input (absolute, as shares of
    the row's total, so that rows compare), the signed values, and the
    source share."""
    source = np.abs(np.asarray(found.source, "float64"))  # (T, S)
    target = np.abs(np.asarray(found.target, "float64"))  # (T, T)
    totals = source.sum(-1, keepdims=True) + target.sum(-1, keepdims=True)
    totals[totals == 0] = 1.0
    error = found.completeness_error
    return {
        "serial": serial,
        "method": found.method,
        "steps": found.steps,
        "seconds": None if seconds is None else round(seconds, 3),
        "tokens": {
            "source": found.source_tokens,
            "target": found.target_tokens,
            "decoder_input": found.decoder_input_tokens,
        },
        "source": np.round(source / totals, 4).tolist(),
        "prefix": np.round(target / totals, 4).tolist(),
        "signed_source": np.round(np.asarray(found.source), 4).tolist(),
        "signed_prefix": np.round(np.asarray(found.target), 4).tolist(),
        "source_share": np.round(found.source_share, 4).tolist(),
        "log_probs": np.round(found.values, 4).tolist(),
        "completeness_error": None if error is None else np.round(error, 4).tolist(),
    }


# The stages of `head_payload`, left to right: key, label, formula, shape.
HEAD_STAGES = (
    ("x", "input vector", "x = embedding + position", "(D,)"),
    ("normalized", "normalized", "x̂ = LayerNorm(x)", "(D,)"),
    ("q", "query", "q = x̂ W_Q + b_Q", "(d_k,)"),
    ("keys", "keys", "k_j = x̂_j W_K + b_K", "(keys, d_k)"),
    ("products", "per dimension", "q_d · k_jd", "(keys, d_k)"),
    ("dots", "dot products", "q · k_j = Σ_d q_d k_jd", "(keys,)"),
    ("scaled", "scaled", "s_j = q · k_j / √d_k", "(keys,)"),
    ("mask", "mask", "masked keys get −∞", "(keys,)"),
    ("weights", "softmax", "w_j = exp(s_j) / Σ_i exp(s_i)", "(keys,)"),
    ("values", "values", "v_j = x̂_j W_V + b_V", "(keys, d_v)"),
    ("head_output", "head output", "head_h = Σ_j w_j v_j", "(d_v,)"),
    ("concat", "concatenation", "[head_1; …; head_H]", "(H·d_v,)"),
    ("output", "attention output", "concat · W_O + b_O", "(D,)"),
    ("residual", "residual", "x + attention output", "(D,)"),
    ("block_output", "block output", "the next block's input", "(D,)"),
)


def head_payload(serial, stages, translation, kind, layer, head, query):
    """One head's stages for the browser (and `/head`): the numbers rounded,
    the softmax row under `"weights"`, each stage with its label, formula
    and shape in the model's real sizes."""
    cols = AXES[kind][1]
    pieces = tokens(translation)
    d_k = int(stages["d_k"])
    sizes = {
        "D": str(len(stages["x"])),
        "d_k": str(d_k),
        "d_v": str(len(stages["head_output"])),
        "keys": str(len(stages["dots"])),
        "H": str(stages["num_heads"]),
        "H·d_v": str(len(stages["concat"])),
    }

    def shape(text):
        for name in sorted(sizes, key=len, reverse=True):
            text = text.replace(name, sizes[name])
        return text

    def rounded(x):
        return np.round(np.asarray(x, "float64"), 5).tolist()

    labels = []
    for key, label, formula, size in HEAD_STAGES:
        if key == "normalized" and not stages["normalize_first"]:
            formula = "x̂ = x (post-LN: the norm comes after the residual)"
        if key == "x" and kind == "cross":
            formula = "x = the self-attention block's output"
        elif key == "x" and layer > 0:
            formula = "x = the previous block's output"
        if key == "block_output" and not stages["normalize_first"]:
            formula = "LayerNorm(x + attention output)"
        labels.append(
            {"key": key, "label": label, "formula": formula, "shape": shape(size)}
        )
    values = {key: rounded(stages[key]) for key, *_ in HEAD_STAGES if key != "mask"}
    # The model's inputs: the query's token and position vectors (their sum
    # is layer 0's x), and the position vectors of its whole sequence.
    values["token_vector"] = rounded(stages["token_vector"])
    values["position_vector"] = rounded(stages["position_vector"])
    # float64 before rounding: a rounded float32 is still a long decimal.
    values["positions"] = np.round(
        np.asarray(stages["positions"], "float64"), 3
    ).tolist()
    values["mask"] = [bool(m) for m in stages["mask"]]
    return {
        "serial": serial,
        "kind": kind,
        "layer": int(layer),
        "head": int(head),
        "query": int(query),
        "query_token": pieces["source" if kind == "encoder" else "decoder"][int(query)],
        "produces": None if kind == "encoder" else pieces["target"][int(query)],
        "key_tokens": pieces[cols],
        "d_k": d_k,
        "sqrt_d_k": round(float(np.sqrt(d_k)), 5),
        "num_heads": int(stages["num_heads"]),
        "normalize_first": bool(stages["normalize_first"]),
        "stages": labels,
        **values,
    }
