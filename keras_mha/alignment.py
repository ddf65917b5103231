"""Word alignments from cross-attention or word deletion, and their error
rate.

Words are the whitespace-separated words of the source text and of the
target text: SentencePiece marks each word's first piece with "▁", so the
pieces of a `Translation` group into exactly those words
(`keras_mha.tokens.word_groups`); control pieces (`<s>`, `</s>`) are no
words. A piece-level attention matrix becomes a word-level one by summing
over a word's source pieces and averaging over its target pieces, and each
target word is linked to the source word it attends to most.

Methods (`method=`):
- `"average"`: cross-attention averaged over every layer and head; row t is
  the step that *produced* target piece t.
- `"shift-att"` (Chen et al., 2020, "Accurate Word Alignment Induction from
  Neural Machine Translation"): the same average, read one step later, at
  the row where target piece t is the decoder *input*: the decoder has then
  seen the word and attends to its source.
- `"layer:<n>"`: layer n's heads averaged (row as in `"average"`); a
  negative n counts from the last layer (`"layer:-2"`, the one before it).
- `"head:<n>:<h>"`: head h of layer n alone.
- Any of these with `"shift-"` before it reads one step later, as
  `"shift-att"` does (`"shift-layer:-2"`).
- `"deletion"`: no attention; the source is scored again without each of
  its words (`keras_mha.deletion`) and each target word's row is a softmax
  of how much its log-probability drops per deleted word (the "prediction
  difference" of Li et al., 2019). It needs the model (`align`, or
  `word_alignment(..., deletion=...)`) and has the lowest AER on the gold
  sets: `DEFAULT_METHOD`.

How a word matrix becomes links (a suffix, default `argmax`):
- `argmax`: each target word to the source word it attends to most.
- `+inter`: only links that are also the column's argmax (the target word
  that attends most to that source word): fewer, surer links, as the
  symmetrised "ArgMax" of SimAlign (Jalili Sabet et al., 2020).
- `+union`: row argmaxes and column argmaxes together.
- `+p<t>`: every link whose weight in its row is at least t (rows sum to 1),
  e.g. `"average+p0.3"`: none, one or several per target word.

A diagonal prior (`+diag` before the rule, e.g. `"average+diag+inter"`):
each word row is multiplied by `exp(-4 |(i + 0.5) / S - (j + 0.5) / T|)`
for source word i of S and target word j of T, and normalized again, before
the links are read: fast_align's preference for links near the diagonal
(Dyer et al., 2013, with its default tension 4, not fitted to any gold set).
Attention of a small model on text unlike its training data spreads over
the sentence; the prior breaks near-ties in favour of the usual word order.

Links are `(source_word, target_word)` index pairs; `to_pharaoh` writes them
in the standard `i-j` form (i = source word, j = target word).

Example:

```python
translation = translator.score("I love you.", "Te quiero.")
links = word_alignment(translation, method="shift-att")
to_pharaoh(links)  # e.g. "0-0 1-1 2-0"
alignment_error_rate([links], sure=[{(1, 1), (2, 0)}])
translation, links = align(translator, "I love you.", "Te quiero.")  # Default.
```

Shape legend: N layers, H heads, T target pieces, S source pieces.
"""

import numpy as np

from keras_mha.deletion import word_deletion
from keras_mha.errors import InvalidArgumentError
from keras_mha.tokens import CONTROL_PIECES, merge_labels, merge_pieces, word_groups

# The default is the method with the lowest mean AER over the human gold sets
# of `../shared/data/align` with the shipped models
# (`python -m benchmarks.bench_alignment`; table in docs/performance.md):
# word deletion under the diagonal prior, links where the row and column
# argmaxes agree. It runs the model once more per source word (`align`);
# of the methods that read a translation's recorded attention alone, the
# lowest that works for any model shape is `ATTENTION_METHOD`.
DEFAULT_METHOD = "deletion+diag+inter"
ATTENTION_METHOD = "average+diag+inter"
DELETION_METHODS = (
    DEFAULT_METHOD,
    "deletion+inter",
    "deletion+diag+union",
    "deletion",
)
ALIGNMENT_METHODS = (
    ATTENTION_METHOD,
    "average+diag+union",
    "average+union",
    "average+inter",
    "average",
    "shift-att",
)
# fast_align's default diagonal tension (Dyer et al., 2013).
DIAGONAL_TENSION = 4.0


def _groups(pieces):
    """Word groups of `pieces`, control pieces left out."""
    return [
        group
        for group in word_groups(pieces)
        if not (len(group) == 1 and pieces[group[0]] in CONTROL_PIECES)
    ]


def source_words(translation):
    """The source words of a `Translation` (its source text split on spaces)."""
    pieces = translation.source_tokens
    return merge_labels(pieces, _groups(pieces))


def target_words(translation):
    """The target words of a `Translation` (its text split on spaces)."""
    pieces = translation.target_tokens
    return merge_labels(pieces, _groups(pieces))


def parse_method(method):
    """`method` -> `(shift, layer, head)`; layer/head `None` means averaged.

    The links suffix (`+inter`, ...) is read by `parse_links`.

    Raises:
        ValueError: for an unknown method, with the accepted forms.
    """
    attention = str(method).split("+", 1)[0]
    if attention == "average":
        return False, None, None
    if attention == "shift-att":
        return True, None, None
    shift = attention.startswith("shift-")
    parts = attention.removeprefix("shift-").split(":")
    try:
        if parts[0] == "layer" and len(parts) == 2:
            return shift, int(parts[1]), None
        if parts[0] == "head" and len(parts) == 3:
            return shift, int(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise InvalidArgumentError(
        'Received an invalid value for argument `method`, expected "shift-att", '
        '"average", "layer:<n>" or "head:<n>:<h>" (maybe after "shift-"), '
        'maybe followed by "+inter", "+union" or "+p<threshold>". '
        f"Received: method={method!r}"
    )


def uses_diagonal_prior(method):
    """Whether `method` names the diagonal prior (`"...+diag[+rule]"`)."""
    parts = str(method).split("+")
    return len(parts) > 1 and parts[1] == "diag"


def parse_links(method):
    """The links rule of `method`: `("argmax" | "inter" | "union", None)` or
    `("threshold", t)`; a `+diag` before it is read by `uses_diagonal_prior`.

    Raises:
        ValueError: for an unknown rule.
    """
    parts = str(method).split("+")
    if uses_diagonal_prior(method):
        parts = parts[:1] + parts[2:]
    if len(parts) == 1:
        return "argmax", None
    rule = "+".join(parts[1:])
    if rule in ("inter", "union"):
        return rule, None
    if rule.startswith("p"):
        try:
            threshold = float(rule[1:])
        except ValueError:
            threshold = None
        if threshold is not None and 0 < threshold <= 1:
            return "threshold", threshold
    raise InvalidArgumentError(
        "Received an invalid value for the links rule of `method`, expected "
        '"+inter", "+union" or "+p<t>" with 0 < t <= 1 (maybe after "+diag"). '
        f"Received: method={method!r}"
    )


RULES = ("", "+inter", "+union", "+p0.3", "+diag", "+diag+inter", "+diag+union")


def method_names(num_layers, num_heads, rules=RULES):
    """Every method for a model of this shape, the averaged ones first."""
    attention = ["average", "shift-att"]
    attention += [f"layer:{n}" for n in range(num_layers)]
    attention += [f"shift-layer:{n}" for n in range(num_layers)]
    attention += [f"head:{n}:{h}" for n in range(num_layers) for h in range(num_heads)]
    return [a + rule for a in attention for rule in rules]


def piece_attention(translation, method=ATTENTION_METHOD):
    """The `(T, S)` cross-attention a method reads, rows = target pieces.

    With `"shift-att"` row t is the attention of step t + 1 (zeros for the
    last piece, which is never an input).

    Raises:
        ValueError: for an unknown method or a layer/head the model lacks.
    """
    shift, layer, head = parse_method(method)
    cross = np.asarray(translation.attention["cross"], "float64")  # (N, H, T, S)
    num_layers, num_heads = cross.shape[:2]
    if layer is not None and -num_layers <= layer < 0:
        layer += num_layers
    if layer is not None and not 0 <= layer < num_layers:
        raise InvalidArgumentError(
            f"`method={method!r}` names layer {layer}; the model has "
            f"{num_layers} layers (0 to {num_layers - 1})"
        )
    if head is not None and not 0 <= head < num_heads:
        raise InvalidArgumentError(
            f"`method={method!r}` names head {head}; the model has "
            f"{num_heads} heads (0 to {num_heads - 1})"
        )
    if layer is None:
        matrix = cross.mean(axis=(0, 1))  # (T, S)
    elif head is None:
        matrix = cross[layer].mean(axis=0)  # (T, S)
    else:
        matrix = cross[layer, head]  # (T, S)
    if shift:
        matrix = np.concatenate([matrix[1:], np.zeros_like(matrix[:1])], axis=0)
    return matrix


def word_attention(translation, method=ATTENTION_METHOD):
    """`(target_words, source_words)` attention that the links come from
    (under the diagonal prior when `method` names it)."""
    matrix = piece_attention(translation, method)
    rows = _groups(translation.target_tokens)
    cols = _groups(translation.source_tokens)
    words = merge_pieces(matrix, rows, cols)
    return diagonal_prior(words) if uses_diagonal_prior(method) else words


def diagonal_prior(matrix, tension=DIAGONAL_TENSION):
    """A `(T, S)` word matrix with each row weighted toward the diagonal,
    `exp(-tension |(i + 0.5) / S - (j + 0.5) / T|)` at target j, source i,
    and normalized to sum to 1 again (all-zero rows stay zero)."""
    matrix = np.asarray(matrix, "float64")
    if matrix.size == 0:
        return matrix
    target_length, source_length = matrix.shape
    j = (np.arange(target_length)[:, None] + 0.5) / target_length  # (T, 1)
    i = (np.arange(source_length)[None] + 0.5) / source_length  # (1, S)
    weighted = matrix * np.exp(-tension * np.abs(i - j))  # (T, S)
    totals = weighted.sum(axis=-1, keepdims=True)
    return np.divide(weighted, totals, out=np.zeros_like(weighted), where=totals > 0)


def word_alignment(translation, method=ATTENTION_METHOD, deletion=None):
    """Links each target word to the source word it attends to most (or,
    for a `"deletion..."` method, needs most).

    Args:
        translation: a `Translation` with attention (from `translate` or
            `Translator.score`).
        method: see the module docstring.
        deletion: the `keras_mha.deletion.WordDeletion` of the same source
            and target, which the `"deletion..."` methods read (`align`
            computes it).

    Returns:
        A set of `(source_word, target_word)` index pairs, one per target
        word that attends anywhere (none when either side has no words; none
        for a word whose row is all zeros, e.g. the last word under
        `"shift-att"` when the output stopped at `max_length` without the
        end piece, so that it is never an input).

    Raises:
        InvalidArgumentError: for an unknown method, or a deletion method
            without `deletion`.
    """
    rule, threshold = parse_links(method)
    if is_deletion(method):
        if deletion is None:
            raise InvalidArgumentError(
                f"`method={method!r}` reads the source with each word left out: "
                "pass `deletion=keras_mha.deletion.word_deletion(translator, "
                "source, target)`, or call `align(translator, source, target)`"
            )
        return deletion_alignment(
            deletion, rule, threshold, diagonal=uses_diagonal_prior(method)
        )
    matrix = word_attention(translation, method)  # (target words, source words)
    if matrix.size == 0:
        return set()
    return links_from_matrix(matrix, rule, threshold)


def is_deletion(method):
    """Whether `method` is a word-deletion method (`"deletion[+...]"`)."""
    return str(method).split("+", 1)[0] == "deletion"


def align(translator, source, target=None, method=DEFAULT_METHOD):
    """Word alignment of `source` and its translation by any method.

    Args:
        translator: a `keras_mha.Translator`.
        source: str, the source text.
        target: its translation (text or pieces); `None` aligns the model's
            own greedy translation.
        method: see the module docstring; the default has the lowest
            measured AER.

    Returns:
        `(translation, links)`: the teacher-forced (or translated)
        `Translation`, with attention, and the set of `(source_word,
        target_word)` links.
    """
    if target is None:
        translation = translator.translate(source, return_attention=True)
    else:
        translation = translator.score(source, target, top_k=0)
    deletion = None
    if is_deletion(method):
        deletion = word_deletion(
            translator, " ".join(source_words(translation)), translation.target_tokens
        )
    return translation, word_alignment(translation, method, deletion)


def links_from_matrix(matrix, rule="argmax", threshold=None):
    """`(source_word, target_word)` links of a `(target, source)` word
    matrix by one of the rules of `parse_links`; all-zero rows get none."""
    rows = np.flatnonzero(matrix.sum(axis=-1) > 0)
    by_row = {(int(i), int(j)) for j, i in zip(rows, np.argmax(matrix[rows], -1))}
    if rule == "argmax":
        return by_row
    if rule == "threshold":
        return {(int(i), int(j)) for j, i in zip(*np.nonzero(matrix >= threshold))}
    columns = np.flatnonzero(matrix.sum(axis=0) > 0)
    by_column = {
        (int(i), int(j)) for i, j in zip(columns, np.argmax(matrix[:, columns], 0))
    }
    return by_row & by_column if rule == "inter" else by_row | by_column


def alignment_error_rate(predicted, sure, possible=None):
    """Corpus alignment error rate (Och and Ney, 2003), as a fraction.

    `AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)`, counts summed over the
    sentences; sure links are also possible links.

    Args:
        predicted: list of per-sentence link sets A.
        sure: list of per-sentence sure link sets S.
        possible: list of per-sentence possible link sets P (default: S).

    Returns:
        float in [0, 1]; 0 for a perfect alignment.

    Raises:
        ValueError: if the lists differ in length or nothing is aligned.
    """
    possible = sure if possible is None else possible
    if not len(predicted) == len(sure) == len(possible):
        raise InvalidArgumentError(
            "`predicted`, `sure` and `possible` need one link set per sentence. "
            f"Received: {len(predicted)}, {len(sure)}, {len(possible)}"
        )
    hits_sure = hits_possible = size_predicted = size_sure = 0
    for a, s, p in zip(predicted, sure, possible):
        a, s = set(a), set(s)
        p = set(p) | s
        hits_sure += len(a & s)
        hits_possible += len(a & p)
        size_predicted += len(a)
        size_sure += len(s)
    if size_predicted + size_sure == 0:
        raise InvalidArgumentError(
            "No links in `predicted` or `sure`: AER is undefined."
        )
    return 1.0 - (hits_sure + hits_possible) / (size_predicted + size_sure)


def attribution_alignment(attribution, rule="argmax", threshold=None, diagonal=False):
    """Links from a `keras_mha.attribution.Attribution`: each target word to
    the source word with the largest absolute contribution (summed over the
    word's source pieces, averaged over its target pieces, rows normalized),
    by a rule of `parse_links`, under the diagonal prior if `diagonal`."""
    matrix = np.abs(np.asarray(attribution.source, "float64"))  # (T, S)
    totals = matrix.sum(axis=-1, keepdims=True)
    matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    rows = _groups(attribution.target_tokens)
    cols = _groups(attribution.source_tokens)
    words = merge_pieces(matrix, rows, cols)
    if words.size == 0:
        return set()
    if diagonal:
        words = diagonal_prior(words)
    return links_from_matrix(words, rule, threshold)


def deletion_alignment(deletion, rule="inter", threshold=None, diagonal=True):
    """Links from a `keras_mha.deletion.WordDeletion`: each target word to
    the source word whose deletion lowers its log-probability most (the
    drops averaged over the word's pieces), by a rule of `parse_links`.

    Each word row is a softmax of the drops over the source words,
    `exp(drop_i) / sum_j exp(drop_j)`, i.e. proportional to
    `p(y | x) / p(y | x without word i)`: rows sum to 1 as attention rows
    do, so the diagonal prior (if `diagonal`) and the rules apply alike.
    The defaults are the variant with the lowest AER on the gold sets
    (`benchmarks/bench_alignment.py`)."""
    rows = _groups(deletion.target_tokens)
    drops = np.asarray(deletion.drops, "float64")  # (T, W)
    if not rows or drops.shape[-1] == 0:
        return set()
    words = np.stack([drops[group].mean(axis=0) for group in rows])  # (Tw, W)
    words = np.exp(words - words.max(axis=-1, keepdims=True))
    words /= words.sum(axis=-1, keepdims=True)
    if diagonal:
        words = diagonal_prior(words)
    return links_from_matrix(words, rule, threshold)


def alignment_scores(predicted, sure, possible=None):
    """Corpus AER, precision (`|A & P| / |A|`) and recall (`|A & S| / |S|`),
    as fractions in a dict; see `alignment_error_rate`."""
    possible = sure if possible is None else possible
    counts = np.zeros(4)  # |A & S|, |A & P|, |A|, |S|
    for a, s, p in zip(predicted, sure, possible):
        a, s = set(a), set(s)
        p = set(p) | s
        counts += (len(a & s), len(a & p), len(a), len(s))
    hits_sure, hits_possible, size_predicted, size_sure = counts
    return {
        "aer": alignment_error_rate(predicted, sure, possible),
        "precision": hits_possible / size_predicted if size_predicted else 0.0,
        "recall": hits_sure / size_sure if size_sure else 0.0,
    }


def to_pharaoh(links):
    """`{(0, 0), (2, 1)}` -> `"0-0 2-1"` (sorted by target, then source)."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda x: (x[1], x[0])))


def from_pharaoh(text):
    """Reads Pharaoh links: `"0-0 2-1 1?2"` -> `(sure, possible)`.

    `i-j` is a sure link; `i?j` and `ipj` are possible links. As AER counts
    them, every sure link is also possible: `sure = {(0, 0), (2, 1)}`,
    `possible = {(0, 0), (2, 1), (1, 2)}`.

    Raises:
        ValueError: for a malformed link.
    """
    sure, possible = set(), set()
    for item in text.split():
        separator = next((s for s in "-?p" if s in item), "-")
        parts = item.split(separator)
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise InvalidArgumentError(
                f"Malformed Pharaoh link {item!r}: expected `i-j` (sure) or "
                "`i?j` (possible) with source word i and target word j, e.g. "
                "`0-0 1-2`"
            )
        link = (int(parts[0]), int(parts[1]))
        possible.add(link)
        if separator == "-":
            sure.add(link)
    return sure, possible
