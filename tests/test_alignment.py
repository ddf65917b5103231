"""Word alignment from attention and its error rate: keras_mha.alignment."""

import numpy as np
import pytest

from keras_mha.alignment import (
    alignment_error_rate,
    from_pharaoh,
    piece_attention,
    source_words,
    target_words,
    to_pharaoh,
    word_alignment,
    word_attention,
)
from keras_mha.translator import Translation

# Source "the big house" (4 pieces: ▁the ▁bi g ▁house), target "la casa
# grande" (▁la ▁casa ▁grande </s>): S = 4 pieces, T = 4 pieces.
SOURCE = ["▁the", "▁bi", "g", "▁house"]
TARGET = ["▁la", "▁casa", "▁gran", "de", "</s>"]


def _translation(cross):
    T = len(TARGET)
    return Translation(
        text="la casa grande",
        source_tokens=SOURCE,
        target_tokens=TARGET,
        decoder_input_tokens=["<s>"] + TARGET[:-1],
        score=0.0,
        token_probs=[1.0] * T,
        attention={"cross": np.asarray(cross, "float32")},
    )


def _one_hot_rows(columns, S=4):
    """Attention rows that each put all weight on one source piece."""
    rows = np.zeros((len(columns), S))
    rows[np.arange(len(columns)), columns] = 1.0
    return rows


# Row t is the step that produced target piece t: la<-the, casa<-house,
# gran<-bi, de<-g, </s><-house.
PRODUCING = _one_hot_rows([0, 3, 1, 2, 3])
# The same model read one step later (row t + 1 attends to target piece t's
# source): the answer shift-att should find.
INPUT_ROWS = _one_hot_rows([1, 0, 3, 1, 2])


def test_words_are_the_whitespace_words_of_each_side():
    translation = _translation(np.zeros((1, 1, 5, 4)))
    assert source_words(translation) == ["the", "big", "house"]
    assert target_words(translation) == ["la", "casa", "grande"]


def test_average_links_each_target_word_to_its_most_attended_source_word():
    # Two layers of two heads that disagree; the average decides.
    cross = np.stack([np.stack([PRODUCING, PRODUCING]), np.stack([INPUT_ROWS] * 2)])
    cross[1] *= 0.5
    cross[1] += 0.5 * PRODUCING
    translation = _translation(cross)
    assert word_alignment(translation, "average") == {(0, 0), (2, 1), (1, 2)}


def test_shift_att_reads_the_row_where_the_word_is_the_input():
    cross = np.broadcast_to(INPUT_ROWS, (2, 2, 5, 4))
    translation = _translation(cross)
    np.testing.assert_array_equal(
        piece_attention(translation, "shift-att")[:4], INPUT_ROWS[1:]
    )
    # la <- row 1 (the), casa <- row 2 (house), grande <- rows 3-4 (big).
    assert word_alignment(translation, "shift-att") == {(0, 0), (2, 1), (1, 2)}
    # Without the shift the same maps give another, wrong, alignment.
    assert word_alignment(translation, "average") != {(0, 0), (2, 1), (1, 2)}


def test_shift_att_leaves_unlinked_a_word_never_read_as_an_input():
    # An output cut at `max_length`: no `</s>`, so its last word is never a
    # decoder input and its shifted row is all zeros: no link, not word 0.
    pieces = ["▁la", "▁casa", "▁grande"]
    translation = Translation(
        text="la casa grande",
        source_tokens=SOURCE,
        target_tokens=pieces,
        decoder_input_tokens=["<s>"] + pieces[:-1],
        score=0.0,
        token_probs=[1.0] * 3,
        attention={"cross": np.broadcast_to(_one_hot_rows([0, 0, 3]), (1, 1, 3, 4))},
    )
    assert word_alignment(translation, "shift-att") == {(0, 0), (2, 1)}


def test_one_layer_and_one_head():
    cross = np.zeros((2, 2, 5, 4))
    cross[0, 1] = PRODUCING
    cross[0, 0] = cross[1, 0] = cross[1, 1] = _one_hot_rows([3, 3, 3, 3, 3])
    translation = _translation(cross)
    assert word_alignment(translation, "head:0:1") == {(0, 0), (2, 1), (1, 2)}
    assert word_alignment(translation, "layer:1") == {(2, 0), (2, 1), (2, 2)}
    with pytest.raises(ValueError, match="layer 2"):
        word_alignment(translation, "layer:2")
    with pytest.raises(ValueError, match="head 5"):
        word_alignment(translation, "head:0:5")
    with pytest.raises(ValueError, match="shift-att"):
        word_alignment(translation, "best")


def test_word_attention_sums_source_pieces_and_averages_target_pieces():
    cross = np.full((1, 1, 5, 4), 0.25)
    matrix = word_attention(_translation(cross), "average")
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(matrix, [[0.25, 0.5, 0.25]] * 3)


def test_no_words_no_links():
    empty = Translation(
        "", [], [], [], 0.0, [], attention={"cross": np.zeros((1, 1, 0, 0))}
    )
    assert word_alignment(empty) == set()


def test_aer_textbook_cases():
    sure = [{(0, 0), (1, 1)}]
    possible = [{(0, 0), (1, 1), (1, 2)}]
    assert alignment_error_rate([{(0, 0), (1, 1)}], sure, possible) == 0.0
    # A possible link costs nothing beyond its share: 1 - (2 + 3) / (3 + 2).
    assert alignment_error_rate([{(0, 0), (1, 1), (1, 2)}], sure, possible) == 0.0
    # Disjoint: 1.
    assert alignment_error_rate([{(5, 5)}], sure, possible) == 1.0
    # Half right: A = {(0,0), (2,2)}: 1 - (1 + 1) / (2 + 2) = 0.5.
    assert alignment_error_rate([{(0, 0), (2, 2)}], sure) == 0.5
    # Corpus level: counts are summed, not the sentence rates averaged.
    rate = alignment_error_rate(
        [{(0, 0)}, {(0, 0), (1, 1), (2, 2), (3, 3)}],
        [{(0, 1)}, {(0, 0), (1, 1), (2, 2), (3, 3)}],
    )
    assert rate == pytest.approx(1 - 8 / 10)
    with pytest.raises(ValueError, match="one link set per sentence"):
        alignment_error_rate([set()], [set(), set()])


def test_pharaoh_round_trip():
    links = {(0, 0), (2, 1), (1, 2)}
    assert to_pharaoh(links) == "0-0 2-1 1-2"
    assert from_pharaoh("0-0 2-1 1-2") == (links, links)
    assert from_pharaoh("") == (set(), set())


def test_pharaoh_possible_links_stay_possible():
    # `i?j` and `ipj` are possible links: never counted as sure.
    sure, possible = from_pharaoh("0-0 1?2 3p4")
    assert sure == {(0, 0)}
    assert possible == {(0, 0), (1, 2), (3, 4)}
    assert alignment_error_rate([{(0, 0), (1, 2)}], [sure], [possible]) == 0.0
    with pytest.raises(ValueError, match="Malformed"):
        from_pharaoh("0-a")


# ------------------------------------------------------------ link rules
def test_link_rules_of_a_word_matrix():
    from keras_mha.alignment import links_from_matrix

    # Rows: target words; columns: source words; rows sum to 1.
    matrix = np.array([[0.7, 0.3, 0.0], [0.6, 0.4, 0.0], [0.0, 0.45, 0.55]])
    argmax = {(0, 0), (0, 1), (2, 2)}
    assert links_from_matrix(matrix) == argmax
    # Column argmaxes: source 0 -> target 0, source 1 -> target 2, source 2 -> 2.
    assert links_from_matrix(matrix, "inter") == {(0, 0), (2, 2)}
    assert links_from_matrix(matrix, "union") == argmax | {(1, 2)}
    assert links_from_matrix(matrix, "threshold", 0.4) == {
        (0, 0),
        (0, 1),
        (1, 1),
        (1, 2),
        (2, 2),
    }


def test_methods_name_a_rule_after_a_plus():
    cross = np.broadcast_to(INPUT_ROWS, (2, 2, 5, 4))
    translation = _translation(cross)
    assert word_alignment(translation, "shift-att+union") >= word_alignment(
        translation, "shift-att+inter"
    )
    for method in ("average+maybe", "average+p0", "average+p1.5", "sideways+inter"):
        with pytest.raises(ValueError, match="invalid value"):
            word_alignment(translation, method)


def test_the_diagonal_prior_breaks_near_ties_toward_the_word_order():
    from keras_mha.alignment import diagonal_prior, links_from_matrix

    # Target word 0 attends almost evenly to source words 0 and 2; the
    # prior prefers word 0 (on the diagonal), a clear preference survives.
    matrix = np.array([[0.45, 0.1, 0.45], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05]])
    weighted = diagonal_prior(matrix)
    np.testing.assert_allclose(weighted.sum(axis=-1), 1.0)
    assert links_from_matrix(weighted) == {(0, 0), (1, 1), (0, 2)}
    # exp(-4 |1/6 - 5/6|) between the far corners, against 1 on the diagonal.
    flat = diagonal_prior(np.ones((3, 3)))
    assert flat[0, 2] / flat[0, 0] == pytest.approx(np.exp(-4 * 2 / 3))
    assert np.all(diagonal_prior(np.zeros((2, 3))) == 0)  # Empty rows stay empty.


def test_the_diagonal_prior_is_named_before_the_links_rule():
    from keras_mha.alignment import method_names, parse_links, uses_diagonal_prior

    assert parse_links("average+diag+inter") == ("inter", None)
    assert parse_links("layer:1+diag") == ("argmax", None)
    assert uses_diagonal_prior("average+diag+p0.3")
    assert not uses_diagonal_prior("average+inter")
    translation = _translation(np.broadcast_to(PRODUCING, (2, 2, 5, 4)))
    for method in ("average+inter+diag", "average+diag+diag", "average+diag+maybe"):
        with pytest.raises(ValueError, match="invalid value"):
            word_alignment(translation, method)
    assert "head:1:2+diag+union" in method_names(2, 3)


def test_negative_layers_count_from_the_last_and_shift_applies_to_any():
    cross = np.stack(
        [np.broadcast_to(PRODUCING, (2, 5, 4)), np.broadcast_to(INPUT_ROWS, (2, 5, 4))]
    )
    translation = _translation(cross)
    np.testing.assert_array_equal(
        piece_attention(translation, "layer:-1"),
        piece_attention(translation, "layer:1"),
    )
    np.testing.assert_array_equal(
        piece_attention(translation, "shift-layer:1")[:4], INPUT_ROWS[1:]
    )
    with pytest.raises(ValueError, match="layer -3"):
        piece_attention(translation, "layer:-3")


def test_every_method_of_a_model_shape_is_named_once():
    from keras_mha.alignment import method_names

    names = method_names(2, 3)
    assert len(names) == len(set(names)) == (2 + 2 + 2 + 6) * 7
    assert names[:2] == ["average", "average+inter"]


def test_alignment_scores_give_aer_precision_and_recall():
    from keras_mha.alignment import alignment_scores

    scores = alignment_scores([{(0, 0), (1, 2)}], [{(0, 0), (1, 1)}])
    assert scores == {"aer": pytest.approx(0.5), "precision": 0.5, "recall": 0.5}


def test_attribution_links_follow_the_largest_absolute_contribution():
    from keras_mha.alignment import attribution_alignment
    from keras_mha.attribution import Attribution

    # Output pieces: ▁la ▁casa ▁gran de </s>; source: ▁the ▁bi g ▁house.
    source = -_one_hot_rows([0, 3, 1, 2, 3])  # Negative: the size counts.
    a = Attribution(
        "grad_x_input",
        source,
        np.zeros((5, 5)),
        np.zeros(5),
        source_tokens=SOURCE,
        target_tokens=TARGET,
    )
    assert attribution_alignment(a) == {(0, 0), (2, 1), (1, 2)}


def test_deletion_links_each_target_word_to_the_word_it_needs_most():
    from keras_mha.alignment import deletion_alignment
    from keras_mha.deletion import WordDeletion

    # Output pieces ▁la ▁casa ▁gran de </s>; source words the big house.
    # "grande" is the mean of its pieces: (0.5 + 3.5) / 2 = 2 on "big".
    drops = np.array(
        [
            [2.0, 0.0, 0.1],  # la -> the
            [0.0, 0.2, 3.0],  # casa -> house
            [0.0, 0.5, 0.4],  # gran
            [0.0, 3.5, 0.0],  # de
            [9.0, 9.0, 9.0],  # </s>: no word
        ]
    )
    deletion = WordDeletion(["the", "big", "house"], TARGET, SOURCE, np.zeros(5), drops)
    links = {(0, 0), (2, 1), (1, 2)}
    assert deletion_alignment(deletion, "argmax", diagonal=False) == links
    assert deletion_alignment(deletion) == links  # "+diag+inter"
    # A drop that is negative everywhere (deleting helps) still ranks.
    deletion.drops = drops - 10.0
    assert deletion_alignment(deletion, "argmax", diagonal=False) == links


def test_word_deletion_scores_the_source_without_each_word():
    from keras_mha import Translator
    from keras_mha.deletion import word_deletion
    from keras_mha.errors import InvalidArgumentError
    from tests.app_fixtures import FIXTURE_MODELS, TINY_MODEL

    translator = Translator.load(FIXTURE_MODELS / TINY_MODEL)
    deletion = word_deletion(translator, "the old man sings", "el viejo canta")
    T = len(deletion.target_tokens)
    assert deletion.target_tokens[-1] == "</s>"
    assert deletion.drops.shape == (T, 4) and deletion.log_probs.shape == (T,)
    # Column 1 is the source without "old", scored on its own.
    alone = translator.score("the man sings", deletion.target_tokens, top_k=0)
    expected = deletion.log_probs - np.log(np.asarray(alone.token_probs))
    np.testing.assert_allclose(deletion.drops[:, 1], expected, atol=1e-5)
    whole = translator.score("the old man sings", "el viejo canta", top_k=0)
    np.testing.assert_allclose(
        deletion.log_probs, np.log(np.asarray(whole.token_probs)), atol=1e-6
    )
    # The model's own translation by default; one word has nothing to delete.
    own = translator.translate("the old man sings", return_attention=False)
    scored = word_deletion(translator, "the old man sings").target_tokens
    assert scored[-1] == "</s>" and scored[:-1] == own.target_tokens[: len(scored) - 1]
    assert word_deletion(translator, "hello").drops.shape[1] == 1
    # Rows repeated up to a fixed batch change nothing but the batch.
    fixed = word_deletion(translator, "the old man sings", "el viejo canta", 16, 16)
    np.testing.assert_allclose(fixed.drops, deletion.drops, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="no words"):
        word_deletion(translator, "  ")


def test_align_by_deletion_is_the_default_and_needs_the_model():
    from keras_mha import Translator
    from keras_mha.alignment import DEFAULT_METHOD, align, deletion_alignment
    from keras_mha.deletion import word_deletion
    from keras_mha.errors import InvalidArgumentError
    from tests.app_fixtures import FIXTURE_MODELS, TINY_MODEL

    translator = Translator.load(FIXTURE_MODELS / TINY_MODEL)
    source, target = "the old man sings", "el viejo canta"
    translation, links = align(translator, source, target)
    assert DEFAULT_METHOD == "deletion+diag+inter"
    assert target_words(translation) == ["el", "viejo", "canta"]
    deletion = word_deletion(translator, source, translation.target_tokens)
    assert links == deletion_alignment(deletion, "inter", diagonal=True)
    assert word_alignment(translation, "deletion", deletion) == deletion_alignment(
        deletion, "argmax", diagonal=False
    )
    with pytest.raises(InvalidArgumentError, match="deletion="):
        word_alignment(translation, DEFAULT_METHOD)
    # Attention methods read the translation alone, as before.
    own, attention_links = align(translator, source, method="average")
    assert attention_links == word_alignment(own, "average")
