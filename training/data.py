"""Parallel corpora and the input pipelines for translation.

The corpora are read from a local directory laid out as `../shared/data` is
(see its README): the Tatoeba pairs `spa-eng/`, `deu-eng/` and `fra-eng/`,
each `{train,valid,test}.tsv`, and
`multi30k/{train,val,test_2016_flickr}.{lang}.gz`. On a machine without that
directory they are downloaded once into the Keras cache.

Shape legend: B batch, S source length, T target length, L bucket length (the
fixed padded length that both S and T take inside one bucket).

Example:

```python
pairs = load_pairs("spa-eng", "train", max_pairs=1000)
sources, references = group_references(load_pairs("spa-eng", "test"))
tokenizer = training.tokenizers.load_tokenizer("saved_models/en-es/spm.model")
dataset = make_dataset(pairs, tokenizer, tokenizer, max_tokens=4096)
inputs, labels = next(iter(dataset))
inputs["encoder_inputs"].shape  # (B, L)
```

`make_dataset` is the `tf.data` pipeline (tokenization inside the graph) used
wherever TensorFlow is installed; `BucketedBatches` is the same batching as a
`keras.utils.PyDataset` of NumPy arrays, for machines without TensorFlow
(a JAX- or PyTorch-only GPU box).
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import logging
import os
import pathlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:  # Imported where used: the NumPy pipeline runs without it.
    import tensorflow as tf

logger = logging.getLogger(__name__)

# Environment variable that points at a local copy of the corpora.
DATA_DIR_ENV = "KERAS_MHA_DATA_DIR"
# Where the corpora sit beside a checkout: `../shared/data` from the repository
# root. None where the package is installed rather than run from a checkout.
_CHECKOUT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = (
    _CHECKOUT.parent / "shared" / "data"
    if (_CHECKOUT / "pyproject.toml").is_file()
    else None
)
# Keras cache sub-directory that downloads go to (`~/.keras/datasets/keras_mha`).
CACHE_SUBDIR = "datasets/keras_mha"

# Our split names.
SPLITS = ("train", "valid", "test")
# Padded lengths of the length buckets, before clipping to `max_length`.
BUCKET_LENGTHS = (8, 12, 16, 24, 32, 48, 64)
# Sentences tokenized per call of the tokenizers inside `tf.data`.
TOKENIZE_BATCH_SIZE = 256

# Public homes of the Tatoeba pairs (manythings.org/anki, from tatoeba.org):
# one zip each holding one unsplit `{lang}.txt`.
SPA_ENG_URL = "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"
DEU_ENG_URL = "https://www.manythings.org/anki/deu-eng.zip"
FRA_ENG_URL = "https://www.manythings.org/anki/fra-eng.zip"
MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
    "{split}.{lang}.gz"
)
# Sources held out of a downloaded Tatoeba corpus for each of valid and test.
TATOEBA_HELD_OUT_SOURCES = 1500
# Seed of the source-level split of a downloaded Tatoeba corpus.
TATOEBA_SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a parallel corpus lives and how to read it.

    Args:
        name: key in `DATASETS`, e.g. `"multi30k-en-de"`.
        languages: `(source, target)` language codes, e.g. `("en", "de")`.
        subdir: directory of the corpus under the data directory.
        file_format: `"tsv"` (one `source<TAB>target` pair a line) or
            `"aligned"` (one gzip'd file per language, line-aligned).
        splits: our split names (`"train"`, `"valid"`, `"test"`) mapped to
            the corpus' own.
        urls: public download address(es); `{split}` and `{lang}` are filled
            in for aligned corpora.
        archive_member: for a downloaded `tsv` corpus, the unsplit text file
            inside the zip (e.g. `"deu.txt"`).
        corpus: the corpus' name as a model card gives it.
        domain: what kind of text it holds, e.g. `"image captions"`.
        homepage: where the corpus and its terms are described.
        license: a Hugging Face Hub license id (`"other"` with `license_note`).
        license_note: the terms in words, with the attribution they ask for.
        hub_dataset: the Hub dataset id of the same corpus, if there is one.
        split_note: how the splits were made, in a sentence.
    """

    name: str
    languages: tuple[str, str]
    subdir: str
    file_format: str
    splits: Mapping[str, str]
    urls: tuple[str, ...]
    archive_member: str | None = None
    corpus: str = ""
    domain: str = ""
    homepage: str = ""
    license: str = "other"
    license_note: str = ""
    hub_dataset: str | None = None
    split_note: str = ""

    @property
    def source_language(self) -> str:
        return self.languages[0]

    @property
    def target_language(self) -> str:
        return self.languages[1]

    def files(self, split: str) -> tuple[str, ...]:
        """File names of `split`, relative to `subdir` (one per language if aligned)."""
        if split not in self.splits:
            raise ValueError(
                f"Received an invalid value for argument `split`, expected one "
                f"of {tuple(self.splits)}. Received: split={split!r}"
            )
        corpus_split = self.splits[split]
        if self.file_format == "tsv":
            return (f"{corpus_split}.tsv",)
        return tuple(f"{corpus_split}.{lang}.gz" for lang in self.languages)


def _multi30k(target_language: str) -> DatasetInfo:
    return DatasetInfo(
        name=f"multi30k-en-{target_language}",
        languages=("en", target_language),
        subdir="multi30k",
        file_format="aligned",
        splits={"train": "train", "valid": "val", "test": "test_2016_flickr"},
        urls=(MULTI30K_URL,),
        corpus="Multi30k (task 1)",
        domain="image captions",
        homepage="https://github.com/multi30k/dataset",
        license="other",
        license_note=(
            "Multi30k (Elliott et al., 2016; French: Elliott et al., 2017; "
            "Czech: Barrault et al., 2018): translated captions of Flickr30k "
            "images, offered for research and education; see "
            "https://github.com/multi30k/dataset for its terms."
        ),
        hub_dataset="bentrevett/multi30k" if target_language == "de" else None,
        split_note=(
            "The corpus' own splits: train (29,000 captions), val (1,014) and "
            "test_2016_flickr (1,000), one reference each."
        ),
    )


def _tatoeba(name: str, target_language: str, url: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        languages=("en", target_language),
        subdir=name,
        file_format="tsv",
        splits={"train": "train", "valid": "valid", "test": "test"},
        urls=(url,),
        archive_member=f"{name.split('-')[0]}.txt",
        corpus="Tatoeba (manythings.org/anki)",
        domain="everyday sentences",
        homepage="https://www.manythings.org/anki/",
        license="cc-by-2.0",
        license_note=(
            "CC-BY 2.0 (France). Attribution: www.manythings.org/anki and tatoeba.org."
        ),
        hub_dataset="Helsinki-NLP/tatoeba",
        split_note=(
            "Split by English source sentence with a fixed seed, so that no "
            f"English sentence is in two splits: {TATOEBA_HELD_OUT_SOURCES:,} "
            "sources each for validation and test, each with all of its "
            "translations (multi-reference BLEU)."
        ),
    )


DATASETS: dict[str, DatasetInfo] = {
    "spa-eng": _tatoeba("spa-eng", "es", SPA_ENG_URL),
    "deu-eng": _tatoeba("deu-eng", "de", DEU_ENG_URL),
    "fra-eng": _tatoeba("fra-eng", "fr", FRA_ENG_URL),
    **{f"multi30k-en-{lang}": _multi30k(lang) for lang in ("de", "fr", "cs")},
}


@dataclasses.dataclass(frozen=True)
class LoadStats:
    """What `load_pairs_with_stats` read.

    Args:
        num_pairs: pairs returned.
        num_skipped: malformed lines skipped (no tab, more than one tab, an
            empty side, bytes that are not UTF-8).
        files: the files read.
    """

    num_pairs: int
    num_skipped: int
    files: tuple[pathlib.Path, ...]


def get_dataset_info(dataset: str) -> DatasetInfo:
    """Returns the `DatasetInfo` of `dataset`, with a helpful error if unknown."""
    if dataset not in DATASETS:
        raise ValueError(
            f"Received an invalid value for argument `dataset`, expected one of "
            f"{tuple(DATASETS)}. Received: dataset={dataset!r}"
        )
    return DATASETS[dataset]


def resolve_data_dir(
    data_dir: str | os.PathLike | None = None, *, dataset: str | None = None
) -> pathlib.Path:
    """Finds the directory that holds the corpora, downloading them if needed.

    Tried in order: `data_dir`; the `KERAS_MHA_DATA_DIR` environment variable;
    `../shared/data` from the repository root when running from a checkout
    and it exists; otherwise the corpora are downloaded into the Keras cache
    (`~/.keras/datasets/keras_mha`). The current directory plays no part.

    Args:
        data_dir: explicit data directory; returned as is.
        dataset: what to download when nothing local is found (a `DATASETS`
            key); all of `DATASETS` if `None`.

    Returns:
        The data directory, holding the corpus folders (`spa-eng/`, ...).
    """
    if data_dir is not None:
        return pathlib.Path(data_dir)
    if os.environ.get(DATA_DIR_ENV):
        return pathlib.Path(os.environ[DATA_DIR_ENV])
    if SHARED_DATA_DIR is not None and SHARED_DATA_DIR.is_dir():
        return SHARED_DATA_DIR
    names = DATASETS if dataset is None else (get_dataset_info(dataset).name,)
    cache_dir = None
    for name in names:
        cache_dir = download(name)
    return cache_dir


def download(dataset: str, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Downloads `dataset` into the Keras cache; returns the data directory.

    Files already in the cache are not fetched again. A Tatoeba archive holds
    one unsplit `{lang}.txt`; it is split by English source into `train.tsv`,
    `valid.tsv` and `test.tsv` (see `split_by_source`).

    Args:
        dataset: a `DATASETS` key.
        cache_dir: Keras cache root; `~/.keras` if `None`.

    Returns:
        The data directory (`{cache_dir}/datasets/keras_mha`).
    """
    info = get_dataset_info(dataset)
    cache_dir = pathlib.Path(cache_dir or pathlib.Path.home() / ".keras")
    data_dir = cache_dir / CACHE_SUBDIR
    corpus_dir = data_dir / info.subdir
    if info.file_format == "aligned":
        for split in info.splits:
            for file_name in info.files(split):
                corpus_split, lang, _ = file_name.rsplit(".", 2)
                keras.utils.get_file(
                    file_name,
                    origin=info.urls[0].format(split=corpus_split, lang=lang),
                    cache_dir=str(cache_dir),
                    cache_subdir=f"{CACHE_SUBDIR}/{info.subdir}",
                )
        return data_dir

    if all((corpus_dir / info.files(split)[0]).exists() for split in SPLITS):
        return data_dir
    extracted = keras.utils.get_file(
        f"{info.name}.zip",
        origin=info.urls[0],
        extract=True,
        cache_dir=str(cache_dir),
        cache_subdir=CACHE_SUBDIR,
    )
    text_file = next(pathlib.Path(extracted).rglob(info.archive_member))
    pairs, _ = _read_tsv(text_file, max_pairs=None, max_columns=None)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    for split, split_pairs in split_by_source(pairs).items():
        lines = (f"{source}\t{target}\n" for source, target in split_pairs)
        (corpus_dir / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return data_dir


def split_by_source(
    pairs: Sequence[tuple[str, str]],
    held_out_sources: int = TATOEBA_HELD_OUT_SOURCES,
    seed: int = TATOEBA_SPLIT_SEED,
) -> dict[str, list[tuple[str, str]]]:
    """Splits pairs into train/valid/test so that no source is in two splits.

    Distinct sources are shuffled with `seed`; the first `held_out_sources` go
    to valid, the next to test, the rest to train. Each source's pairs stay
    consecutive, in their original order, so `group_references` finds them.

    Returns:
        `{"train": pairs, "valid": pairs, "test": pairs}`.
    """
    by_source: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        by_source.setdefault(pair[0], []).append(pair)
    sources = list(by_source)
    random.Random(seed).shuffle(sources)
    split_sources = {
        "valid": sources[:held_out_sources],
        "test": sources[held_out_sources : 2 * held_out_sources],
        "train": sources[2 * held_out_sources :],
    }
    return {
        split: [pair for source in split_sources[split] for pair in by_source[source]]
        for split in SPLITS
    }


def _decode(line: bytes) -> str | None:
    """Decodes one line as UTF-8 without its line ending; `None` if invalid."""
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None


def _read_tsv(
    path: pathlib.Path, max_pairs: int | None, max_columns: int | None = 2
) -> tuple[list[tuple[str, str]], int]:
    """Reads `source<TAB>target` lines; returns the pairs and the lines skipped.

    `max_columns=None` keeps the first two columns of longer lines (the
    downloaded `spa.txt` of newer releases carries an attribution column).
    """
    pairs, num_skipped = [], 0
    with open(path, "rb") as f:
        for raw_line in f:
            if max_pairs is not None and len(pairs) >= max_pairs:
                break
            line = _decode(raw_line)
            columns = [] if line is None else line.split("\t")
            if max_columns is None:
                columns = columns[:2]
            if len(columns) != 2 or not all(column.strip() for column in columns):
                num_skipped += 1
                continue
            pairs.append((columns[0].strip(), columns[1].strip()))
    return pairs, num_skipped


def _read_aligned(
    source_path: pathlib.Path, target_path: pathlib.Path, max_pairs: int | None
) -> tuple[list[tuple[str, str]], int]:
    """Reads two line-aligned gzip'd files; returns the pairs and pairs skipped."""
    with gzip.open(source_path, "rb") as f:
        source_lines = f.read().splitlines()
    with gzip.open(target_path, "rb") as f:
        target_lines = f.read().splitlines()
    if len(source_lines) != len(target_lines):
        raise ValueError(
            f"Line-aligned files differ in length: {source_path} has "
            f"{len(source_lines)} lines, {target_path} has {len(target_lines)}."
        )
    pairs, num_skipped = [], 0
    for raw_source, raw_target in zip(source_lines, target_lines):
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
        source, target = _decode(raw_source), _decode(raw_target)
        if not (source and source.strip() and target and target.strip()):
            num_skipped += 1
            continue
        pairs.append((source.strip(), target.strip()))
    return pairs, num_skipped


def load_pairs_with_stats(
    dataset: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    max_pairs: int | None = None,
) -> tuple[list[tuple[str, str]], LoadStats]:
    """Reads the `(source, target)` pairs of a split and says what was skipped.

    Malformed lines (no tab, more than one tab, a side that is empty after
    stripping, bytes that are not UTF-8) are skipped, counted and logged as a
    warning. Sides are returned stripped of surrounding whitespace.

    Args:
        dataset: a `DATASETS` key: `"spa-eng"`, `"deu-eng"`, `"fra-eng"`,
            `"multi30k-en-de"`, `"multi30k-en-fr"` or `"multi30k-en-cs"`.
        split: `"train"`, `"valid"` or `"test"`.
        data_dir: data directory; see `resolve_data_dir`.
        max_pairs: stop after this many pairs (the first ones of the file).

    Returns:
        `(pairs, stats)`: the pairs, in file order, and a `LoadStats`.

    Raises:
        ValueError: for an unknown dataset or split, or line-aligned files of
            different lengths.
    """
    info = get_dataset_info(dataset)
    file_names = info.files(split)
    corpus_dir = resolve_data_dir(data_dir, dataset=dataset) / info.subdir
    paths = tuple(corpus_dir / file_name for file_name in file_names)
    if info.file_format == "tsv":
        pairs, num_skipped = _read_tsv(paths[0], max_pairs)
    else:
        pairs, num_skipped = _read_aligned(*paths, max_pairs)
    if num_skipped:
        logger.warning(
            "Skipped %d malformed line(s) in %s.",
            num_skipped,
            ", ".join(map(str, paths)),
        )
    return pairs, LoadStats(len(pairs), num_skipped, paths)


def load_pairs(
    dataset: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    max_pairs: int | None = None,
) -> list[tuple[str, str]]:
    """Reads the `(source, target)` pairs of a split; see `load_pairs_with_stats`."""
    pairs, _ = load_pairs_with_stats(dataset, split, data_dir, max_pairs)
    return pairs


def group_references(
    pairs: Iterable[tuple[str, str]],
) -> tuple[list[str], list[list[str]]]:
    """Groups consecutive pairs that share a source, for multi-reference BLEU.

    Only *consecutive* pairs are merged (the corpora keep a source's
    translations together); a source that reappears later starts a new group.

    Returns:
        `(sources, references)`: one entry per group; `references[i]` lists
        every target of `sources[i]` in file order.

    Example:

    >>> group_references([("Hi.", "Hola."), ("Hi.", "¡Hola!"), ("Run!", "¡Corre!")])
    (['Hi.', 'Run!'], [['Hola.', '¡Hola!'], ['¡Corre!']])
    """
    sources: list[str] = []
    references: list[list[str]] = []
    for source, target in pairs:
        if sources and sources[-1] == source:
            references[-1].append(target)
        else:
            sources.append(source)
            references.append([target])
    return sources, references


def bucket_lengths(max_length: int) -> list[int]:
    """Padded lengths `L` of the buckets: `BUCKET_LENGTHS` clipped to `max_length`."""
    return [length for length in BUCKET_LENGTHS if length < max_length] + [max_length]


def bucket_batch_size(length: int, max_tokens: int, multiple: int = 1) -> int:
    """Sequences of padded length `length` per batch, for at most `max_tokens`.

    A multiple of 8 when at least 8 (friendlier to accelerators), never 0,
    and a multiple of `multiple` (the device count under data parallelism).
    """
    batch_size = max(1, max_tokens // length)
    batch_size = batch_size - batch_size % 8 if batch_size >= 8 else batch_size
    return max(multiple, batch_size - batch_size % multiple)


def _check_max_length(max_length):
    if max_length < 2:
        raise ValueError(
            "Received an invalid value for argument `max_length`, expected an "
            f"integer >= 2. Received: max_length={max_length}"
        )


def make_dataset(
    pairs: Sequence[tuple[str, str]],
    tokenize_source: Callable[[tf.Tensor], tf.RaggedTensor],
    tokenize_target: Callable[[tf.Tensor], tf.RaggedTensor],
    *,
    max_tokens: int = 4096,
    max_length: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    bos_id: int = 2,
    eos_id: int = 3,
    drop_remainder: bool = True,
    batch_multiple: int = 1,
) -> tf.data.Dataset:
    """Builds the training input pipeline: tokenize, truncate, bucket, batch.

    Sentences are tokenized inside `tf.data` (in batches, then unbatched). The
    source keeps at most `max_length` ids and the target `max_length - 1`, so
    the decoder inputs `[BOS] + target` and labels `target + [EOS]` also fit
    in `max_length`. Pairs are bucketed by `max(S, T)` and every bucket is
    padded (with 0) to its fixed length `L` from `bucket_lengths(max_length)`,
    so a jitted step sees a handful of shapes only. A bucket's batch size is
    `bucket_batch_size(L, max_tokens)`, so `B * L <= max_tokens` whenever a
    single sequence fits.

    Args:
        pairs: `(source, target)` strings.
        tokenize_source: maps a string tensor `(N,)` to int ids, a
            `tf.RaggedTensor` `(N, None)` (e.g. a keras-hub tokenizer).
        tokenize_target: the same for targets.
        max_tokens: token budget of one batch, per sequence tensor.
        max_length: longest padded length `L`.
        shuffle: shuffle the pairs (seeded, reshuffled each epoch) before
            bucketing.
        seed: shuffle seed.
        bos_id: id prepended to the decoder inputs.
        eos_id: id appended to the labels.
        drop_remainder: drop each bucket's last incomplete batch.
        batch_multiple: every batch size is a multiple of this (the number
            of devices that split a batch); needs `drop_remainder=True`.

    Returns:
        A dataset of `({"encoder_inputs": (B, L), "decoder_inputs": (B, L)},
        labels (B, L))`, all int32, padded with 0.
    """
    import tensorflow as tf

    _check_max_length(max_length)
    sources = tf.constant([source for source, _ in pairs], dtype=tf.string)
    targets = tf.constant([target for _, target in pairs], dtype=tf.string)
    dataset = tf.data.Dataset.from_tensor_slices((sources, targets))
    if shuffle:
        dataset = dataset.shuffle(
            min(len(pairs), 20_000) or 1, seed=seed, reshuffle_each_iteration=True
        )

    def tokenize(sources, targets):
        # (N,) strings -> ragged (N, None) ids.
        source_ids = tf.cast(tokenize_source(sources), tf.int32)[:, :max_length]
        target_ids = tf.cast(tokenize_target(targets), tf.int32)[:, : max_length - 1]
        ones = tf.ones([tf.shape(targets)[0], 1], tf.int32)  # (N, 1)
        decoder_ids = tf.concat([ones * bos_id, target_ids], axis=1)
        labels = tf.concat([target_ids, ones * eos_id], axis=1)
        return source_ids, decoder_ids, labels

    dataset = dataset.batch(TOKENIZE_BATCH_SIZE)
    dataset = dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    # Unbatching ragged ids gives rank-1 ragged specs (with no ragged
    # dimension) that `padded_batch` rejects; an identity map makes them dense.
    dataset = dataset.unbatch().map(lambda *ids: tuple(map(tf.identity, ids)))

    lengths = bucket_lengths(max_length)
    # A bucket holds lengths < boundary and is padded to boundary - 1 = L. The
    # last bucket (lengths > max_length) never fills; it gets a dummy size.
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda source, decoder, labels: tf.maximum(
            tf.shape(source)[0], tf.shape(labels)[0]
        ),
        bucket_boundaries=[length + 1 for length in lengths],
        bucket_batch_sizes=[
            bucket_batch_size(n, max_tokens, batch_multiple) for n in lengths
        ]
        + [batch_multiple],
        padding_values=0,
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )
    dataset = dataset.map(
        lambda source, decoder, labels: (
            {"encoder_inputs": source, "decoder_inputs": decoder},
            labels,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


class BucketedBatches(keras.utils.PyDataset):
    """`make_dataset`'s batches as a `keras.utils.PyDataset` of NumPy arrays.

    For machines without TensorFlow (e.g. a GPU box with JAX or PyTorch only).
    Same truncation, BOS/EOS, buckets and per-bucket batch sizes as
    `make_dataset`; sentences are tokenized once, up front, in Python. Each
    epoch shuffles the pairs inside every bucket and then the order of the
    batches (seeded by `seed` and the epoch number).

    Args:
        pairs: `(source, target)` strings.
        encode_source: maps a list of strings to lists of int ids (e.g.
            `sentencepiece.SentencePieceProcessor.encode`).
        encode_target: the same for targets.
        max_tokens, max_length, shuffle, seed, bos_id, eos_id,
        drop_remainder, batch_multiple: as in `make_dataset`.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Each item is `({"encoder_inputs": (B, L), "decoder_inputs": (B, L)},
    labels (B, L))`, all int32, padded with 0.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        encode_source: Callable[[list[str]], list[list[int]]],
        encode_target: Callable[[list[str]], list[list[int]]],
        *,
        max_tokens: int = 4096,
        max_length: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        drop_remainder: bool = True,
        batch_multiple: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_max_length(max_length)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_remainder = drop_remainder
        self.epoch = 0
        source_ids = encode_source([source for source, _ in pairs])
        target_ids = encode_target([target for _, target in pairs])
        lengths = bucket_lengths(max_length)
        # Per non-empty bucket: (batch size, encoder (N, L), decoder (N, L),
        # labels (N, L)); a pair goes to the smallest L that holds it.
        self.buckets = []
        members = [[] for _ in lengths]
        for source, target in zip(source_ids, target_ids):
            source, target = source[:max_length], target[: max_length - 1]
            length = max(len(source), len(target) + 1)
            members[bisect.bisect_left(lengths, length)].append((source, target))
        for length, bucket in zip(lengths, members):
            if not bucket:
                continue
            encoder = np.zeros((len(bucket), length), "int32")
            decoder = np.zeros((len(bucket), length), "int32")
            labels = np.zeros((len(bucket), length), "int32")
            for row, (source, target) in enumerate(bucket):
                encoder[row, : len(source)] = source
                decoder[row, : len(target) + 1] = [bos_id] + list(target)
                labels[row, : len(target) + 1] = list(target) + [eos_id]
            batch_size = bucket_batch_size(length, max_tokens, batch_multiple)
            self.buckets.append((batch_size, encoder, decoder, labels))
        self._index = self._batches()

    def _batches(self):
        """`(bucket, row indices)` of every batch of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for bucket, (batch_size, encoder, _, _) in enumerate(self.buckets):
            order = np.arange(len(encoder))
            if self.shuffle:
                rng.shuffle(order)
            stop = (
                len(order) - len(order) % batch_size
                if self.drop_remainder
                else len(order)
            )
            batches += [
                (bucket, order[i : i + batch_size]) for i in range(0, stop, batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __len__(self):
        return len(self._index)

    def __getitem__(self, index):
        bucket, rows = self._index[index]
        _, encoder, decoder, labels = self.buckets[bucket]
        inputs = {"encoder_inputs": encoder[rows], "decoder_inputs": decoder[rows]}
        return inputs, labels[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self._index = self._batches()


@dataclasses.dataclass(frozen=True)
class MixPart:
    """One corpus of a training mix, as a recipe's `[[config.mix]]` table.

    Args:
        dataset: a `DATASETS` key.
        repeat: how many times its pairs enter the training set (oversampling;
            an integer >= 1).
        min_words: keep only pairs whose source has at least this many
            whitespace-separated words.
        max_words: keep only pairs whose source has at most this many words
            (`None`: no limit).
    """

    dataset: str
    repeat: int = 1
    min_words: int = 0
    max_words: int | None = None

    @classmethod
    def from_dict(cls, values: Mapping) -> MixPart:
        """A `MixPart` from a recipe table, with clear errors for bad values."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - fields
        if unknown or "dataset" not in values:
            raise ValueError(
                "A `mix` entry needs `dataset` and may set `repeat`, `min_words` "
                f"and `max_words`. Received: {dict(values)!r}"
            )
        part = cls(**values)
        get_dataset_info(part.dataset)
        for name in ("repeat", "min_words", "max_words"):
            value = getattr(part, name)
            if value is None and name == "max_words":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"Received an invalid value for `{name}` of the mix entry "
                    f"{part.dataset!r}, expected an integer >= 0. Received: {value!r}"
                )
        if part.repeat < 1:
            raise ValueError(
                f"Received an invalid value for `repeat` of the mix entry "
                f"{part.dataset!r}, expected an integer >= 1. Received: {part.repeat}"
            )
        return part

    def keeps(self, source: str) -> bool:
        words = len(source.split())
        return words >= self.min_words and (
            self.max_words is None or words <= self.max_words
        )


def parse_mix(mix: Sequence[Mapping] | None) -> tuple[MixPart, ...]:
    """The `MixPart`s of a recipe's `mix` list (empty for `None`)."""
    parts = tuple(MixPart.from_dict(entry) for entry in mix or ())
    languages = {get_dataset_info(part.dataset).languages for part in parts}
    if len(languages) > 1:
        raise ValueError(
            "Every corpus of a `mix` must have the same languages. Received: "
            + ", ".join(
                f"{p.dataset} {get_dataset_info(p.dataset).languages}" for p in parts
            )
        )
    return parts


def load_mix(
    mix: Sequence[Mapping],
    split: str,
    data_dir: str | os.PathLike | None = None,
    max_pairs: int | None = None,
) -> tuple[list[tuple[str, str]], dict[str, dict]]:
    """The pairs of a training mix, and what each part gave.

    For `split="train"` every part's pairs are filtered by its length limits
    and repeated `repeat` times (the input pipeline shuffles them). Other
    splits give each distinct corpus' pairs once, unfiltered, so that
    validation weighs every domain of the mix.

    Args:
        mix: the recipe's `mix` entries (see `MixPart`).
        split: `"train"`, `"valid"` or `"test"`.
        data_dir: data directory; see `resolve_data_dir`.
        max_pairs: read at most this many pairs of each corpus (tests).

    Returns:
        `(pairs, stats)`: `stats[name]` has `read`, `kept`, `repeat`,
        `pairs` (kept times repeat) and `skipped` (the malformed lines of
        its corpus, counted at its first part, 0 at the others) per part,
        named `dataset`, or `dataset[k]` for the k-th part where a corpus
        appears more than once.
    """
    parts = parse_mix(mix)
    pairs: list[tuple[str, str]] = []
    stats: dict[str, dict] = {}
    cache: dict[str, list[tuple[str, str]]] = {}
    seen = set()
    for index, part in enumerate(parts):
        if split != "train" and part.dataset in seen:
            continue
        seen.add(part.dataset)
        skipped = 0
        if part.dataset not in cache:
            cache[part.dataset], loaded = load_pairs_with_stats(
                part.dataset, split, data_dir, max_pairs
            )
            skipped = loaded.num_skipped
        read = cache[part.dataset]
        if split == "train":
            kept = [pair for pair in read if part.keeps(pair[0])]
            repeat = part.repeat
        else:
            kept, repeat = read, 1
        pairs += kept * repeat
        name = part.dataset
        if sum(p.dataset == part.dataset for p in parts) > 1 and split == "train":
            name = f"{part.dataset}[{index}]"
        stats[name] = {
            "read": len(read),
            "kept": len(kept),
            "repeat": repeat,
            "pairs": len(kept) * repeat,
            "skipped": skipped,
        }
    return pairs, stats
