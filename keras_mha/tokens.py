"""Special tokens and subword-to-word grouping, defined once.

Every model in this project uses a SentencePiece vocabulary whose first ids
are the special tokens below (the training pipeline trains it so), and whose
pieces mark a word's first piece with "▁". The library, the training code
and the app all take these facts from here.

Example:

>>> word_groups(["<s>", "\u2581Hel", "lo", "\u2581world", ".", "</s>"])
[[0], [1, 2], [3, 4], [5]]
>>> merge_labels(["\u2581Hel", "lo"], [[0, 1]])
['Hello']
"""

import numpy as np

# Ids and pieces of the special tokens; 0 doubles as the Keras padding id.
SPECIAL_IDS = {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
SPECIAL_PIECES = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}
PAD, UNK, BOS, EOS = (SPECIAL_PIECES[k] for k in ("pad", "unk", "bos", "eos"))
# SentencePiece's word-boundary marker, the first character of a word's piece.
WORD_BOUNDARY = "\u2581"  # "▁"
# Pieces that are words of their own and never part of the text.
CONTROL_PIECES = frozenset({PAD, BOS, EOS})


def word_groups(pieces):
    """Groups subword pieces into words, as lists of piece indices.

    A word starts at a piece beginning with "▁"; other pieces continue the
    current word; the control pieces `<s>`, `</s>` and `<pad>` are words of
    their own.

    Args:
        pieces: sequence of piece strings.

    Returns:
        A list of lists of indices into `pieces`, in order, covering all.
    """
    groups = []
    previous_control = False
    for index, piece in enumerate(pieces):
        control = piece in CONTROL_PIECES
        if not groups or control or previous_control or piece.startswith(WORD_BOUNDARY):
            groups.append([index])
        else:
            groups[-1].append(index)
        previous_control = control
    return groups


def merge_labels(pieces, groups):
    """Labels of merged words: their pieces joined, without the "▁" mark."""
    labels = []
    for group in groups:
        word = "".join(pieces[i] for i in group).replace(WORD_BOUNDARY, " ").strip()
        labels.append(word or WORD_BOUNDARY)
    return labels


def merge_pieces(attention, row_groups, col_groups):
    """Merges subword-piece attention into word attention.

    A word's key weight is the sum over its pieces (rows still sum to 1);
    a word's query row is the mean over its pieces' rows.

    Args:
        attention: `(..., T, S)` weights over pieces.
        row_groups: lists of row indices, one list per query word (e.g.
            `word_groups(target_tokens)`).
        col_groups: lists of column indices, one list per key word.

    Returns:
        `(..., len(row_groups), len(col_groups))` numpy array.
    """
    attention = np.asarray(attention)
    if not row_groups or not col_groups:
        return np.zeros(attention.shape[:-2] + (len(row_groups), len(col_groups)))
    summed = np.stack(
        [attention[..., group].sum(axis=-1) for group in col_groups], axis=-1
    )  # (..., T, words_S)
    return np.stack(
        [summed[..., group, :].mean(axis=-2) for group in row_groups], axis=-2
    )  # (..., words_T, words_S)
