"""Word deletion: how much less likely each output piece becomes when one
source word is left out.

For a source of words `w_1 … w_W` and a fixed target `y` (teacher forced),
the drop of piece t for word i is

    drop[t, i] = log p(y_t | y_<t, x) - log p(y_t | y_<t, x without w_i)

The source is scored once whole and once without each word: `W + 1`
teacher-forced passes, batched into one call of `Translator.score`. It is an
occlusion explanation (Zeiler and Fergus, 2014; Li et al., 2016), the
"prediction difference" that Li et al. (2019, "On the Word Alignment from
Neural Machine Translation") read alignments from: unlike attention, it
asks the model what each word changed. `keras_mha.alignment` turns it into
word links (`deletion_alignment`); the benchmark that measures every
method against human links is `benchmarks/bench_alignment.py`.

Example:

```python
deletion = word_deletion(translator, "I love you.", "Te quiero.")
deletion.drops.shape    # (T, W): 3 target pieces with "</s>", 3 words
```

Shape legend: T target pieces (the end piece included), W source words.
"""

import dataclasses

import numpy as np

from keras_mha.errors import InvalidArgumentError
from keras_mha.tokens import EOS


@dataclasses.dataclass
class WordDeletion:
    """The drop of every output piece's log-probability per deleted word.

    Attributes:
        source_words: the `W` whitespace-separated source words.
        target_tokens: the `T` target pieces, the end piece included.
        source_tokens: the pieces of the whole source.
        log_probs: `(T,)` each piece's log-probability given the whole source.
        drops: `(T, W)` `log_probs` minus the piece's log-probability with
            word i left out (negative where leaving it out helps).
    """

    source_words: list
    target_tokens: list
    source_tokens: list
    log_probs: np.ndarray
    drops: np.ndarray


def word_deletion(translator, source, target=None, batch_size=64, batch_rows=None):
    """Scores `source` whole and without each of its words.

    Args:
        translator: a `keras_mha.Translator`.
        source: str, the source text; its words are split on whitespace.
        target: the translation, as text or pieces; `None` scores the
            model's own greedy translation. Pieces without the end piece are
            cut to what the model can score with it (`max_length - 1`).
        batch_size: rows per teacher-forced pass.
        batch_rows: if set, the sources without a word are repeated up to a
            multiple of it (and `batch_size` is it), so that every pass has
            that many rows: one compiled program per length bucket, as a
            server that bounds its programs needs.

    Returns:
        A `WordDeletion`.

    Raises:
        InvalidArgumentError: for an empty source.
    """
    words = str(source or "").split()
    if not words:
        raise InvalidArgumentError("`source` has no words to delete")
    if target is None:
        target = translator.translate(source, return_attention=False).target_tokens
    if not isinstance(target, str) and EOS not in target:
        # Cut at `max_length` with no end piece: scored, it gets one, so its
        # last piece makes room for it.
        target = list(target)[: translator.model.max_length - 1]
    whole = translator.score(source, target, top_k=0, return_attention=False)
    pieces = list(whole.target_tokens)  # The same pieces for every row.
    log_probs = np.log(np.asarray(whole.token_probs, "float64"))  # (T,)
    if len(words) == 1:  # Nothing is left to score without the only word.
        drops = np.zeros((len(pieces), 1))
    else:
        shorter = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
        if batch_rows:
            batch_size = batch_rows
            shorter += shorter[-1:] * (-len(shorter) % batch_rows)
        rescored = translator.score(
            shorter,
            [pieces] * len(shorter),
            top_k=0,
            return_attention=False,
            batch_size=batch_size,
        )
        without = np.log(
            np.stack(
                [np.asarray(r.token_probs, "float64") for r in rescored[: len(words)]],
                -1,
            )
        )  # (T, W)
        drops = log_probs[:, None] - without
    return WordDeletion(
        source_words=words,
        target_tokens=pieces,
        source_tokens=list(whole.source_tokens),
        log_probs=log_probs,
        drops=drops,
    )
