"""Tests for `training/tokenizers.py`: SentencePiece training and round trips."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from keras_mha import tokens
from training import data, tokenizers

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
VOCABULARY_SIZE = 200

SENTENCES = [
    "¿Dónde está?",
    "I don't know.",
    "Tom, I can't swim!",
    "Ella no me gusta.",
    "Ein Mann schläft auf einem grünen Sofa.",
    "A group of men are loading cotton onto a truck",
]


def fixture_texts():
    """Joint training text: English, Spanish and German sides of the fixtures."""
    texts = []
    for dataset in ("spa-eng", "multi30k-en-de"):
        for source, target in data.load_pairs(dataset, "train", data_dir=FIXTURES):
            texts += [source, target]
    return texts


def as_lists(values):
    """Tokenizer outputs as Python lists (tf tensors on TF, lists on JAX)."""
    if isinstance(values, tf.RaggedTensor):
        values = values.to_list()
    elif hasattr(values, "numpy"):
        values = values.numpy().tolist()
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("spm")
    return tokenizers.train_tokenizer(fixture_texts(), VOCABULARY_SIZE, output_dir)


@pytest.fixture(scope="module")
def tokenizer(model_path):
    return tokenizers.load_tokenizer(model_path)


def test_train_writes_model_and_vocabulary(model_path):
    assert model_path == model_path.parent / "spm.model"
    vocab_path = model_path.parent / "spm.vocab.txt"
    pieces = vocab_path.read_text(encoding="utf-8").splitlines()
    assert len(pieces) == VOCABULARY_SIZE
    assert pieces[:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert len(set(pieces)) == len(pieces)


def test_vocabulary_file_matches_tokenizer(model_path, tokenizer):
    pieces = (model_path.parent / "spm.vocab.txt").read_text("utf-8").splitlines()
    assert tokenizer.vocabulary_size() == VOCABULARY_SIZE
    assert tokenizer.get_vocabulary() == pieces
    assert [tokenizer.id_to_token(i) for i in range(6)] == pieces[:6]


def test_special_ids_are_those_of_keras_mha_tokens(tokenizer):
    for key, token_id in tokens.SPECIAL_IDS.items():
        piece = tokens.SPECIAL_PIECES[key]
        assert tokenizer.id_to_token(token_id) == piece
        assert tokenizer.token_to_id(piece) == token_id


def test_round_trip_keeps_case_spacing_and_punctuation(tokenizer):
    ids = tokenizer(tf.constant(SENTENCES))
    rows = as_lists(ids)
    assert len(rows) == len(SENTENCES)
    for row in rows:
        assert row and all(isinstance(i, int) for i in row)
        # No unknowns, and no BOS/EOS: `make_dataset` adds those.
        assert not {0, 1, 2, 3} & set(row)
    assert as_lists(tokenizer.detokenize(ids)) == SENTENCES


def test_pieces_show_subwords_with_word_boundaries(tokenizer):
    ids = as_lists(tokenizer(tf.constant(["¿Dónde está?"])))[0]
    pieces = [tokenizer.id_to_token(i) for i in ids]
    assert "".join(pieces).replace(tokens.WORD_BOUNDARY, " ") == " ¿Dónde está?"
    words = tokens.word_groups(pieces)
    assert ["".join(pieces[i] for i in word) for word in words] == [
        "▁¿Dónde",
        "▁está?",
    ]


def test_ids_are_ragged_int32_inside_tf_data(tokenizer):
    dataset = tf.data.Dataset.from_tensor_slices(SENTENCES).batch(3).map(tokenizer)
    assert isinstance(dataset.element_spec, tf.RaggedTensorSpec)
    assert dataset.element_spec.dtype == tf.int32
    (ids, _) = list(dataset)
    assert ids.shape[0] == 3


def test_sequence_length_pads_with_zero(model_path):
    tokenizer = tokenizers.load_tokenizer(model_path, sequence_length=32)
    ids = np.array(as_lists(tokenizer(tf.constant(SENTENCES[:2]))))
    assert ids.shape == (2, 32)
    assert (ids[:, -1] == 0).all()


def test_training_is_deterministic(model_path, tmp_path):
    again = tokenizers.train_tokenizer(fixture_texts(), VOCABULARY_SIZE, tmp_path)
    assert again.read_bytes() == model_path.read_bytes()


def test_tokenizer_feeds_make_dataset(tokenizer):
    pairs = data.load_pairs("spa-eng", "valid", data_dir=FIXTURES)
    dataset = data.make_dataset(
        pairs, tokenizer, tokenizer, max_length=32, shuffle=False, drop_remainder=False
    )
    inputs, labels = next(iter(dataset))
    assert inputs["encoder_inputs"].dtype == tf.int32
    assert (inputs["decoder_inputs"].numpy()[:, 0] == 2).all()
    assert (labels.numpy() == 3).sum() == labels.shape[0]
