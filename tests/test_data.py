"""Tests for `training/data.py`: reading corpora and the `tf.data` pipeline."""

import gzip
import logging
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from training import data

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def codepoints(strings):
    """A stand-in tokenizer: one id per Unicode code point, ragged int32."""
    return tf.strings.unicode_decode(strings, "UTF-8")


def text(ids):
    """Inverts `codepoints` for one row, dropping padding and BOS/EOS ids."""
    return "".join(chr(i) for i in ids if i > 3)


def collect(dataset):
    """All batches as NumPy: a list of (encoder, decoder, labels) triples."""
    return [
        (
            inputs["encoder_inputs"].numpy(),
            inputs["decoder_inputs"].numpy(),
            labels.numpy(),
        )
        for inputs, labels in dataset
    ]


# Reading corpora.


def test_malformed_lines_are_skipped_counted_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="training.data"):
        pairs, stats = data.load_pairs_with_stats("spa-eng", "train", data_dir=FIXTURES)
    # The fixture has 56 good lines and 5 bad ones: no tab, an empty target,
    # an empty source, two tabs, and a byte that is not UTF-8.
    assert stats.num_skipped == 5
    assert stats.num_pairs == len(pairs) == 56
    assert stats.files == (FIXTURES / "spa-eng" / "train.tsv",)
    assert "Skipped 5 malformed line(s)" in caplog.text
    for source, target in pairs:
        assert source and target
        assert source == source.strip() and target == target.strip()
        assert "\t" not in source + target and "\ufffd" not in source + target


def test_clean_split_logs_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="training.data"):
        pairs, stats = data.load_pairs_with_stats("spa-eng", "valid", data_dir=FIXTURES)
    assert stats.num_skipped == 0 and len(pairs) == 12
    assert caplog.text == ""


def test_load_pairs_reads_source_then_target():
    pairs = data.load_pairs("spa-eng", "test", data_dir=FIXTURES)
    assert pairs[0] == (
        "This typewriter doesn't work.",
        "Esta máquina de escribir no funciona.",
    )


def test_max_pairs_keeps_the_first_pairs():
    pairs = data.load_pairs("spa-eng", "train", data_dir=FIXTURES)
    assert data.load_pairs("spa-eng", "train", FIXTURES, max_pairs=30) == pairs[:30]


@pytest.mark.parametrize(
    "split, corpus_split",
    [("train", "train"), ("valid", "val"), ("test", "test_2016_flickr")],
)
@pytest.mark.parametrize("lang", ["de", "fr"])
def test_multi30k_split_mapping(split, corpus_split, lang):
    info = data.DATASETS[f"multi30k-en-{lang}"]
    assert info.languages == ("en", lang)
    assert info.files(split) == (f"{corpus_split}.en.gz", f"{corpus_split}.{lang}.gz")

    pairs = data.load_pairs(f"multi30k-en-{lang}", split, data_dir=FIXTURES)
    with gzip.open(FIXTURES / "multi30k" / f"{corpus_split}.en.gz", "rt") as f:
        sources = f.read().splitlines()
    with gzip.open(FIXTURES / "multi30k" / f"{corpus_split}.{lang}.gz", "rt") as f:
        targets = f.read().splitlines()
    assert len(pairs) == len(sources) == {"train": 40}.get(split, 10)
    assert pairs[0] == (sources[0].strip(), targets[0].strip())
    assert pairs[-1] == (sources[-1].strip(), targets[-1].strip())


def test_datasets_describe_every_pair():
    assert set(data.DATASETS) == {
        "spa-eng",
        "deu-eng",
        "fra-eng",
        "multi30k-en-de",
        "multi30k-en-fr",
        "multi30k-en-cs",
    }
    assert data.DATASETS["spa-eng"].languages == ("en", "es")
    assert data.DATASETS["deu-eng"].languages == ("en", "de")
    assert data.DATASETS["spa-eng"].files("valid") == ("valid.tsv",)
    for info in data.DATASETS.values():
        assert info.source_language == "en"
        assert info.urls and all(url.startswith("http") for url in info.urls)
        # What a model card says about the data.
        tatoeba = info.file_format == "tsv"
        assert info.domain == ("everyday sentences" if tatoeba else "image captions")
        assert info.license == ("cc-by-2.0" if tatoeba else "other")
        assert info.homepage.startswith("https://")
        assert info.corpus and info.license_note and info.split_note


def write_gzip(path, lines):
    path.write_bytes(gzip.compress("".join(f"{x}\n" for x in lines).encode()))


def test_multi30k_skips_empty_sides(tmp_path):
    (tmp_path / "multi30k").mkdir()
    write_gzip(tmp_path / "multi30k" / "val.en.gz", ["A dog.", "", "A cat.", "Sun."])
    write_gzip(tmp_path / "multi30k" / "val.de.gz", ["Ein Hund.", "X.", "Katze.", " "])
    pairs, stats = data.load_pairs_with_stats("multi30k-en-de", "valid", tmp_path)
    assert pairs == [("A dog.", "Ein Hund."), ("A cat.", "Katze.")]
    assert stats.num_skipped == 2


def test_multi30k_mismatched_line_counts_raise(tmp_path):
    (tmp_path / "multi30k").mkdir()
    write_gzip(tmp_path / "multi30k" / "val.en.gz", ["A dog.", "A cat."])
    write_gzip(tmp_path / "multi30k" / "val.de.gz", ["Ein Hund."])
    with pytest.raises(ValueError, match=r"val\.en\.gz.*val\.de\.gz"):
        data.load_pairs("multi30k-en-de", "valid", data_dir=tmp_path)


def test_unknown_dataset_or_split_raises():
    with pytest.raises(ValueError, match="dataset='klingon'"):
        data.load_pairs("klingon", "train", data_dir=FIXTURES)
    with pytest.raises(ValueError, match="split='dev'"):
        data.load_pairs("spa-eng", "dev", data_dir=FIXTURES)


# Locating the data.


def test_resolve_data_dir_prefers_argument_then_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir() == tmp_path / "from_env"


def test_resolve_data_dir_falls_back_to_shared_then_download(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path)
    assert data.resolve_data_dir() == tmp_path

    downloaded = []
    monkeypatch.setattr(data, "SHARED_DATA_DIR", tmp_path / "missing")
    monkeypatch.setattr(
        data, "download", lambda name: downloaded.append(name) or tmp_path / "cache"
    )
    assert data.resolve_data_dir(dataset="spa-eng") == tmp_path / "cache"
    assert downloaded == ["spa-eng"]
    # An installed package has no checkout beside it, whatever the cwd.
    monkeypatch.setattr(data, "SHARED_DATA_DIR", None)
    monkeypatch.chdir(tmp_path)
    assert data.resolve_data_dir(dataset="deu-eng") == tmp_path / "cache"
    assert downloaded == ["spa-eng", "deu-eng"]


def test_the_shared_data_dir_is_beside_the_checkout():
    root = pathlib.Path(data.__file__).resolve().parents[1]
    assert (root / "pyproject.toml").is_file()
    assert data.SHARED_DATA_DIR == root.parent / "shared" / "data"


def test_download_splits_spa_eng_by_source(monkeypatch, tmp_path):
    # A stand-in for the downloaded archive: 4000 sources, two pairs each.
    extracted = tmp_path / "spa-eng_extracted"
    (extracted / "spa-eng").mkdir(parents=True)
    lines = [f"Source {i // 2}.\tDestino {i}.\n" for i in range(8000)]
    (extracted / "spa-eng" / "spa.txt").write_text("".join(lines), encoding="utf-8")
    origins = []

    def fake_get_file(fname, origin, **kwargs):
        origins.append(origin)
        return str(extracted)

    monkeypatch.setattr(data.keras.utils, "get_file", fake_get_file)
    data_dir = data.download("spa-eng", cache_dir=tmp_path)
    assert data_dir == tmp_path / "datasets" / "keras_mha"
    assert origins == [data.SPA_ENG_URL]
    sizes = {}
    for split in data.SPLITS:
        pairs = data.load_pairs("spa-eng", split, data_dir=data_dir)
        sources, references = data.group_references(pairs)
        assert all(len(refs) == 2 for refs in references)
        sizes[split] = len(sources)
    assert sizes == {"train": 1000, "valid": 1500, "test": 1500}
    # A second call finds the split files and fetches nothing.
    data.download("spa-eng", cache_dir=tmp_path)
    assert len(origins) == 1


def test_download_fetches_multi30k_raw_files(monkeypatch, tmp_path):
    origins = []
    monkeypatch.setattr(
        data.keras.utils,
        "get_file",
        lambda fname, origin, **kwargs: origins.append((fname, origin)),
    )
    data.download("multi30k-en-fr", cache_dir=tmp_path)
    url = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
    assert len(origins) == 6
    assert ("val.fr.gz", f"{url}/val.fr.gz") in origins
    assert ("test_2016_flickr.en.gz", f"{url}/test_2016_flickr.en.gz") in origins


def test_split_by_source_keeps_each_source_in_one_split():
    pairs = [(f"source {i // 2}", f"target {i}") for i in range(40)]
    splits = data.split_by_source(pairs, held_out_sources=3, seed=0)
    assert splits == data.split_by_source(pairs, held_out_sources=3, seed=0)
    assert sorted(sum(splits.values(), [])) == sorted(pairs)
    sources = {
        split: {s for s, _ in split_pairs} for split, split_pairs in splits.items()
    }
    assert len(sources["valid"]) == len(sources["test"]) == 3
    assert not sources["train"] & sources["valid"]
    assert not sources["train"] & sources["test"]
    assert not sources["valid"] & sources["test"]
    # Each source's references stay consecutive, so they group back together.
    grouped, references = data.group_references(splits["train"])
    assert len(grouped) == len(set(grouped)) == 14
    assert all(len(refs) == 2 for refs in references)


# Multi-reference grouping.


def test_group_references_merges_consecutive_sources():
    pairs = data.load_pairs("spa-eng", "valid", data_dir=FIXTURES)
    sources, references = data.group_references(pairs)
    assert len(sources) == len(references) == 10
    index = sources.index("Let me give you a hug.")
    assert references[index] == [
        "Deje que le dé un abrazo.",
        "Deja que te abrace.",
        "Déjame darte un abrazo.",
    ]
    assert sum(map(len, references)) == len(pairs)


def test_group_references_only_merges_neighbours():
    pairs = [
        ("Hi.", "Hola."),
        ("Hi.", "¡Hola!"),
        ("Run!", "¡Corre!"),
        ("Hi.", "Buenas."),
    ]
    assert data.group_references(pairs) == (
        ["Hi.", "Run!", "Hi."],
        [["Hola.", "¡Hola!"], ["¡Corre!"], ["Buenas."]],
    )
    assert data.group_references([]) == ([], [])


# The input pipeline.


@pytest.fixture(scope="module")
def pairs():
    return data.load_pairs("spa-eng", "train", data_dir=FIXTURES)


def test_bucket_sizes():
    assert data.bucket_lengths(64) == [8, 12, 16, 24, 32, 48, 64]
    assert data.bucket_lengths(20) == [8, 12, 16, 20]
    assert data.bucket_batch_size(64, 4096) == 64
    assert data.bucket_batch_size(12, 4096) == 336  # 341 rounded down to 8s.
    assert data.bucket_batch_size(48, 200) == 4
    assert data.bucket_batch_size(64, 16) == 1


def test_make_dataset_yields_documented_structure(pairs):
    dataset = data.make_dataset(pairs, codepoints, codepoints, max_length=32)
    inputs_spec, labels_spec = dataset.element_spec
    assert set(inputs_spec) == {"encoder_inputs", "decoder_inputs"}
    for spec in (inputs_spec["encoder_inputs"], inputs_spec["decoder_inputs"]):
        assert spec.dtype == tf.int32 and spec.shape.rank == 2
    assert labels_spec.dtype == tf.int32 and labels_spec.shape.rank == 2


def test_decoder_inputs_and_labels_wrap_target_with_bos_and_eos(pairs):
    dataset = data.make_dataset(
        pairs,
        codepoints,
        codepoints,
        max_length=64,
        shuffle=False,
        drop_remainder=False,
    )
    seen = []
    for encoder, decoder, labels in collect(dataset):
        for source_row, decoder_row, labels_row in zip(encoder, decoder, labels):
            target_length = int((labels_row != 0).sum()) - 1
            assert decoder_row[0] == 2  # BOS.
            assert labels_row[target_length] == 3  # EOS.
            assert (
                decoder_row[1 : target_length + 1] == labels_row[:target_length]
            ).all()
            # Padding is 0 after the last real id, in all three tensors.
            assert (decoder_row[target_length + 1 :] == 0).all()
            assert (labels_row[target_length + 1 :] == 0).all()
            source_length = int((source_row != 0).sum())
            assert (source_row[source_length:] == 0).all()
            seen.append((text(source_row), text(labels_row)))
    # Every pair comes out exactly once (truncated) when nothing is dropped.
    assert sorted(seen) == sorted(
        (source[:64], target[:63]) for source, target in pairs
    )


def test_long_pairs_are_truncated_to_max_length():
    long_pair = [("a" * 50, "b" * 50)]
    dataset = data.make_dataset(
        long_pair, codepoints, codepoints, max_length=16, drop_remainder=False
    )
    ((encoder, decoder, labels),) = collect(dataset)
    assert encoder.shape == decoder.shape == labels.shape == (1, 16)
    assert text(encoder[0]) == "a" * 16
    assert decoder[0, 0] == 2 and text(decoder[0]) == "b" * 15
    assert labels[0, -1] == 3 and text(labels[0]) == "b" * 15


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_batches_fit_token_budget_and_fixed_bucket_lengths(pairs, drop_remainder):
    max_tokens, max_length = 96, 24
    dataset = data.make_dataset(
        pairs,
        codepoints,
        codepoints,
        max_tokens=max_tokens,
        max_length=max_length,
        drop_remainder=drop_remainder,
    )
    batches = collect(dataset)
    assert batches
    for encoder, decoder, labels in batches:
        assert encoder.shape == decoder.shape == labels.shape
        batch_size, length = encoder.shape
        assert length in data.bucket_lengths(max_length)
        assert batch_size * length <= max_tokens
        if drop_remainder:
            assert batch_size == data.bucket_batch_size(length, max_tokens)
        # Each row sits in the smallest bucket that holds it.
        row_lengths = np.maximum((encoder != 0).sum(1), (labels != 0).sum(1))
        assert row_lengths.max() <= length
        smaller = [n for n in data.bucket_lengths(max_length) if n < length]
        assert not smaller or row_lengths.min() > max(smaller)


def test_shuffle_is_seeded(pairs):
    def sources_in_order(seed):
        dataset = data.make_dataset(
            pairs,
            codepoints,
            codepoints,
            max_length=64,
            seed=seed,
            drop_remainder=False,
        )
        return [text(row) for batch in collect(dataset) for row in batch[0]]

    assert sources_in_order(0) == sources_in_order(0)
    assert sources_in_order(0) != sources_in_order(1)


def test_max_length_must_leave_room_for_bos_and_eos(pairs):
    with pytest.raises(ValueError, match="max_length=1"):
        data.make_dataset(pairs, codepoints, codepoints, max_length=1)


# The NumPy pipeline (machines without TensorFlow) batches as tf.data does.


def codepoint_lists(strings):
    """`codepoints` for Python: a list of strings to lists of code points."""
    return [[ord(c) for c in s] for s in strings]


def collect_numpy(dataset):
    return [
        (inputs["encoder_inputs"], inputs["decoder_inputs"], labels)
        for inputs, labels in (dataset[i] for i in range(len(dataset)))
    ]


def rows_by_length(batches):
    """{bucket length L: sorted rows of (source, decoder, labels) ids}."""
    rows = {}
    for encoder, decoder, labels in batches:
        for triple in zip(encoder, decoder, labels):
            rows.setdefault(encoder.shape[1], []).append(
                tuple(tuple(int(i) for i in row) for row in triple)
            )
    return {length: sorted(r) for length, r in rows.items()}


@pytest.mark.parametrize("max_length", [16, 64])
def test_numpy_batches_hold_the_same_rows_as_tf_data(pairs, max_length):
    args = dict(max_tokens=96, max_length=max_length, drop_remainder=False)
    tf_batches = collect(
        data.make_dataset(pairs, codepoints, codepoints, shuffle=False, **args)
    )
    numpy_batches = collect_numpy(
        data.BucketedBatches(pairs, codepoint_lists, codepoint_lists, **args)
    )
    assert rows_by_length(numpy_batches) == rows_by_length(tf_batches)
    for encoder, decoder, labels in numpy_batches:
        assert encoder.dtype == decoder.dtype == labels.dtype == np.int32
        assert encoder.shape == decoder.shape == labels.shape
        assert encoder.shape[0] * encoder.shape[1] <= 96


def test_numpy_batches_drop_remainders_and_reshuffle_each_epoch(pairs):
    dataset = data.BucketedBatches(
        pairs, codepoint_lists, codepoint_lists, max_tokens=96, max_length=24
    )
    first = collect_numpy(dataset)
    for encoder, _, _ in first:
        assert encoder.shape[0] == data.bucket_batch_size(encoder.shape[1], 96)
    dataset.on_epoch_end()
    second = collect_numpy(dataset)
    assert [b[0].tolist() for b in second] != [b[0].tolist() for b in first]
    again = data.BucketedBatches(
        pairs, codepoint_lists, codepoint_lists, max_tokens=96, max_length=24
    )
    assert [b[0].tolist() for b in collect_numpy(again)] == [
        b[0].tolist() for b in first
    ]


# Training mixes.


def test_a_mix_repeats_each_part_after_its_length_filter():
    everyday = data.load_pairs("spa-eng", "train", FIXTURES)
    long = [pair for pair in everyday if len(pair[0].split()) >= 6]
    mix = [{"dataset": "spa-eng"}, {"dataset": "spa-eng", "min_words": 6, "repeat": 2}]
    pairs, stats = data.load_mix(mix, "train", FIXTURES)
    assert pairs == everyday + long + long
    assert 0 < len(long) < len(everyday)
    # The fixture's 5 malformed lines are counted once, at the first part.
    assert stats == {
        "spa-eng[0]": {"read": 56, "kept": 56, "repeat": 1, "pairs": 56, "skipped": 5},
        "spa-eng[1]": {
            "read": 56,
            "kept": len(long),
            "repeat": 2,
            "pairs": 2 * len(long),
            "skipped": 0,
        },
    }


def test_a_mix_validates_on_each_corpus_once_unfiltered():
    mix = [{"dataset": "spa-eng"}, {"dataset": "spa-eng", "min_words": 6, "repeat": 2}]
    pairs, stats = data.load_mix(mix, "valid", FIXTURES)
    assert pairs == data.load_pairs("spa-eng", "valid", FIXTURES)
    assert list(stats) == ["spa-eng"]


def test_a_mix_of_two_corpora_keeps_both():
    mix = [{"dataset": "multi30k-en-de", "max_words": 8}, {"dataset": "multi30k-en-de"}]
    captions = data.load_pairs("multi30k-en-de", "train", FIXTURES)
    pairs, _ = data.load_mix(mix, "train", FIXTURES)
    short = [pair for pair in captions if len(pair[0].split()) <= 8]
    assert pairs == short + captions


@pytest.mark.parametrize(
    "mix, message",
    [
        ([{"repeat": 2}], "needs `dataset`"),
        ([{"dataset": "spa-eng", "weight": 2}], "needs `dataset`"),
        ([{"dataset": "spa-eng", "repeat": 0}], "expected an integer >= 1"),
        ([{"dataset": "spa-eng", "min_words": -1}], "expected an integer >= 0"),
        ([{"dataset": "spa-eng", "repeat": 1.5}], "expected an integer >= 0"),
        ([{"dataset": "klingon"}], "Received: dataset='klingon'"),
        (
            [{"dataset": "spa-eng"}, {"dataset": "multi30k-en-de"}],
            "same languages",
        ),
    ],
)
def test_a_bad_mix_is_refused_with_a_clear_message(mix, message):
    with pytest.raises(ValueError, match=message):
        data.parse_mix(mix)
