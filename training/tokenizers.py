"""SentencePiece subword tokenizers that keep case and punctuation.

One joint vocabulary is trained on source and target text together, so both
sides share ids (and the model may tie embeddings). Normalization is
`nmt_nfkc` (NFKC plus whitespace clean-up, no lowercasing), so
`detokenize(tokenize(text)) == text` for ordinary, single-spaced text.

Example:

```python
path = train_tokenizer(sources + targets, 8000, "runs/en-es")
tokenizer = load_tokenizer(path)
ids = tokenizer(tf.constant(["¿Dónde está?"]))  # Ragged (1, None) int32 ids.
tokenizer.detokenize(ids)  # ["¿Dónde está?"]
```
"""

import os
import pathlib
import random
from collections.abc import Iterable

import sentencepiece

from keras_mha.tokens import SPECIAL_IDS, SPECIAL_PIECES, word_groups

# Sentences the trainer sees at most; larger corpora are sampled (seeded).
MAX_TRAINING_SENTENCES = 1_000_000


def train_tokenizer(
    texts: Iterable[str],
    vocabulary_size: int,
    output_dir: str | os.PathLike,
    name: str = "spm",
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    seed: int = 0,
) -> pathlib.Path:
    """Trains a SentencePiece model and writes it with a plain vocabulary file.

    Training is deterministic: a corpus over `MAX_TRAINING_SENTENCES` is
    sampled in Python with `seed`, and SentencePiece's own generator is seeded.

    Args:
        texts: training sentences; for a joint vocabulary, sources + targets.
        vocabulary_size: number of pieces, special tokens included.
        output_dir: directory to write into (created if missing).
        name: file stem of the outputs.
        model_type: `"bpe"` or `"unigram"` (or SentencePiece's `"char"`,
            `"word"`).
        character_coverage: fraction of characters covered by single pieces;
            the rest map to `<unk>`.
        seed: sampling and SentencePiece seed.

    Returns:
        The path of `{output_dir}/{name}.model`. Also written:
        `{output_dir}/{name}.vocab.txt`, one piece per line in id order.
    """
    texts = [text for text in texts if text.strip()]
    if len(texts) > MAX_TRAINING_SENTENCES:
        texts = random.Random(seed).sample(texts, MAX_TRAINING_SENTENCES)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / f"{name}.model"

    sentencepiece.set_random_generator_seed(seed)
    with open(model_path, "wb") as model_writer:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model_writer,
            vocab_size=vocabulary_size,
            model_type=model_type,
            character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc",
            pad_id=SPECIAL_IDS["pad"],
            unk_id=SPECIAL_IDS["unk"],
            bos_id=SPECIAL_IDS["bos"],
            eos_id=SPECIAL_IDS["eos"],
            pad_piece=SPECIAL_PIECES["pad"],
            unk_piece=SPECIAL_PIECES["unk"],
            bos_piece=SPECIAL_PIECES["bos"],
            eos_piece=SPECIAL_PIECES["eos"],
            # Sampling already happened above; keep the trainer from resampling.
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=2,
            minloglevel=2,
        )

    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_path))
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocab_path = output_dir / f"{name}.vocab.txt"
    vocab_path.write_text("".join(f"{piece}\n" for piece in pieces), encoding="utf-8")
    return model_path


def load_tokenizer(
    model_path: str | os.PathLike, sequence_length: int | None = None
) -> "keras_hub.tokenizers.SentencePieceTokenizer":  # noqa: F821
    """Loads a trained model as a keras-hub `SentencePieceTokenizer`.

    Called on a string tensor `(N,)` it returns int32 ids: a `tf.RaggedTensor`
    `(N, None)`, or a dense `(N, sequence_length)` padded with 0 if
    `sequence_length` is set. No BOS/EOS is added; `make_dataset` does that.

    Args:
        model_path: a `.model` file written by `train_tokenizer`.
        sequence_length: fixed output length, or `None` for ragged ids.
    """
    import keras_hub  # Imported here: it needs TensorFlow (and tensorflow-text).

    return keras_hub.tokenizers.SentencePieceTokenizer(
        proto=str(model_path), sequence_length=sequence_length, dtype="int32"
    )


# Subword-to-word grouping, as everywhere in the project (`keras_mha.tokens`).
pieces_to_words = word_groups
