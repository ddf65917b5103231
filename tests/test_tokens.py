"""The specification of `keras_mha.tokens`: special ids and word grouping."""

import pathlib

import pytest
import sentencepiece

from keras_mha import plots, tokens
from training import tokenizers

TINY_TOKENIZER = (
    pathlib.Path(__file__).parent / "fixtures" / "models" / "en-es-tiny" / "spm.model"
)


def test_special_ids_are_those_of_a_trained_tokenizer():
    processor = sentencepiece.SentencePieceProcessor(model_file=str(TINY_TOKENIZER))
    assert tokens.SPECIAL_IDS == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    for key, token_id in tokens.SPECIAL_IDS.items():
        assert processor.id_to_piece(token_id) == tokens.SPECIAL_PIECES[key]
        assert processor.piece_to_id(tokens.SPECIAL_PIECES[key]) == token_id
    assert (processor.pad_id(), processor.unk_id()) == (0, 1)
    assert (processor.bos_id(), processor.eos_id()) == (2, 3)
    assert (tokens.PAD, tokens.UNK, tokens.BOS, tokens.EOS) == (
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
    )
    assert tokens.CONTROL_PIECES == {"<pad>", "<s>", "</s>"}  # <unk> is text.


def test_a_trained_tokenizer_marks_word_starts_with_the_boundary():
    processor = sentencepiece.SentencePieceProcessor(model_file=str(TINY_TOKENIZER))
    pieces = processor.encode("I love you.", out_type=str)
    assert pieces[0].startswith(tokens.WORD_BOUNDARY)
    words = tokens.merge_labels(pieces, tokens.word_groups(pieces))
    assert words == ["I", "love", "you."]


@pytest.mark.parametrize(
    "pieces, groups",
    [
        (["<s>", "▁Hel", "lo", "▁world", ".", "</s>"], [[0], [1, 2], [3, 4], [5]]),
        (["▁Hel", "lo", "▁world", "."], [[0, 1], [2, 3]]),
        (["<s>", "▁¿", "Dónde", "▁está", "?", "</s>"], [[0], [1, 2], [3, 4], [5]]),
        (["lo", "▁a"], [[0], [1]]),  # A leading continuation is its own word.
        (["ab", "▁c", "</s>", "d", "▁e"], [[0], [1], [2], [3], [4]]),
        (["</s>", "s", "<pad>", "<pad>"], [[0], [1], [2], [3]]),
        (["▁", "H", "i", "<s>", "<s>"], [[0, 1, 2], [3], [4]]),
        (["<unk>", "x", "▁y"], [[0, 1], [2]]),  # <unk> is text, not control.
        ([], []),
    ],
)
def test_word_groups(pieces, groups):
    assert tokens.word_groups(pieces) == groups
    assert sorted(sum(groups, [])) == list(range(len(pieces)))  # Covers all.


def test_merge_labels_join_pieces_without_the_boundary():
    pieces = ["<s>", "▁Hel", "lo", "▁world", ".", "</s>"]
    groups = tokens.word_groups(pieces)
    assert tokens.merge_labels(pieces, groups) == ["<s>", "Hello", "world.", "</s>"]
    # A word that is only the boundary keeps it, so that it stays visible.
    assert tokens.merge_labels(["▁"], [[0]]) == ["▁"]


def test_the_rule_lives_in_one_place():
    assert plots.word_groups is tokens.word_groups
    assert plots.merge_labels is tokens.merge_labels
    assert tokenizers.pieces_to_words is tokens.word_groups
    assert tokenizers.SPECIAL_IDS is tokens.SPECIAL_IDS
