"""Translator: loading a folder, batching, input handling, attention, CLI."""

import json
import os
import pathlib
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest

from keras_mha import Translation, Translator
from keras_mha import translator as translator_module
from keras_mha.transformer import Transformer
from keras_mha.translate import main as translate_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "models" / "en-es-tiny"
SHIPPED = [p for p in (ROOT / "saved_models").glob("*") if (p / "model.keras").exists()]
SENTENCES = ["I love you.", "Tom is here.", "Where is the station?", "Hi!"]


@pytest.fixture(scope="module")
def translator():
    # Two streams whatever the machine's cores: every test of many texts
    # then also runs their searches on two threads.
    return Translator.load(TINY, streams=2)


def test_load_reads_model_tokenizer_and_card(translator):
    assert translator.name == "en-es-tiny"
    assert translator.card["dataset"] == "spa-eng"
    assert translator.model.num_heads == 2


def test_load_draws_no_initial_weights_and_reads_the_saved_ones(monkeypatch):
    saved = keras.saving.load_model(TINY / "model.keras")

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} drew initial weights")

    for name in ("GlorotUniform", "RandomNormal", "RandomUniform"):
        monkeypatch.setattr(getattr(keras.initializers, name), "__call__", refuse)
    loaded = Translator.load(TINY).model
    assert loaded.get_config() == saved.get_config()
    assert [w.path for w in loaded.weights] == [w.path for w in saved.weights]
    for mine, theirs in zip(loaded.weights, saved.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_translation_fields_and_attention_shapes(translator):
    t = translator.translate("I love you.", return_attention=True)
    assert isinstance(t, Translation)
    S, T = len(t.source_tokens), len(t.target_tokens)
    assert S > 0 and T > 0
    assert t.attention["encoder"].shape == (2, 2, S, S)
    assert t.attention["decoder"].shape == (2, 2, T, T)
    assert t.attention["cross"].shape == (2, 2, T, S)
    assert len(t.token_probs) == T
    assert t.decoder_input_tokens[0] == "<s>"
    assert t.decoder_input_tokens[1:] == t.target_tokens[:-1]
    # No padding rows or columns: every row of every map sums to 1.
    for kind, att in t.attention.items():
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-4, err_msg=kind)
    assert np.isclose(t.score, np.sum(np.log(t.token_probs)), atol=1e-3)


def test_attention_is_recorded_only_when_asked(translator):
    plain = translator.translate(SENTENCES)
    asked = translator.translate(SENTENCES, return_attention=True)
    for t, with_attention in zip(plain, asked):
        assert t.attention == {}
        assert t.target_tokens == with_attention.target_tokens
        assert set(with_attention.attention) == {"encoder", "decoder", "cross"}


def test_batched_equals_one_by_one(translator):
    batched = translator.translate(SENTENCES, return_attention=True)
    for sentence, together in zip(SENTENCES, batched):
        alone = translator.translate(sentence, return_attention=True)
        assert alone.target_tokens == together.target_tokens
        np.testing.assert_allclose(
            alone.attention["cross"], together.attention["cross"], atol=1e-5
        )


def test_bulk_greedy_streams_texts_through_the_rows_and_equals_one_by_one(translator):
    # More texts of one source length than a batch: they stream through
    # `batch_size` rows (`RefillGreedySearch`); a longer one and an empty
    # one ride along in an ordinary batch.
    texts = [f"Tom has {n} cats." for n in range(5)] + ["", "a " * 20]
    bulk = translator.translate(texts, batch_size=2, top_k=3)
    assert ("refill", 2, 32, 3) in translator._searches
    for text, together in zip(texts, bulk):
        alone = translator.translate(text, top_k=3)
        assert together.target_tokens == alone.target_tokens
        assert together.token_probs == pytest.approx(alone.token_probs, abs=1e-5)
        assert together.score == pytest.approx(alone.score, abs=1e-4)
        assert together.finished == alone.finished
        for mine, theirs in zip(together.alternatives, alone.alternatives):
            assert [p for p, _ in mine] == [p for p, _ in theirs]
            assert [q for _, q in mine] == pytest.approx(
                [q for _, q in theirs], abs=1e-5
            )


def test_a_few_long_sources_stream_through_a_quarter_of_the_rows():
    # Texts of a longer source shape beside a bulk stream, too few for the
    # full rows but at least 4: they stream through `batch_size // 4` rows
    # on every thread rather than decode as one batch of `batch_size` rows,
    # and are encoded in batches of `batch_size` like the others.
    fresh = Translator.load(TINY, streams=2)
    short = [f"Tom has {n} cats." for n in range(32)]
    long = ["a " * (20 + n) for n in range(5)]
    bulk = fresh.translate(short + long, batch_size=16)
    assert {key[:2] for key in fresh._searches} == {
        ("encode",),
        ("refill", 16),
        ("refill", 4),
    }
    for text, together in zip(short[:2] + long, bulk[:2] + bulk[32:]):
        alone = fresh.translate(text)
        assert together.target_tokens == alone.target_tokens
        assert together.token_probs == pytest.approx(alone.token_probs, abs=1e-5)
        assert together.finished == alone.finished
    # Fewer go in one batch, and so do they all in a call that streams
    # nothing through the full rows.
    for texts in (short + long[:3], long):
        fewer = Translator.load(TINY, streams=2)
        fewer.translate(texts, batch_size=16)
        assert ("refill", 4) not in {key[:2] for key in fewer._searches}
        assert any(key[0] == "search" for key in fewer._searches)


def test_bulk_sources_are_packed_into_few_rows_without_overlap():
    lengths = np.array([9, 7, 7, 6, 5, 4, 3, 3, 2, 1, 1])  # 48 pieces
    row, offset, segment, rows = translator_module._pack(lengths, 16)
    assert rows == 3  # 48 pieces in rows of 16: none left empty.
    for r in range(rows):
        inside = np.flatnonzero(row == r)
        assert sorted(segment[inside]) == list(range(1, len(inside) + 1))
        pieces = np.zeros(16, int)
        for i in inside:
            pieces[offset[i] : offset[i] + lengths[i]] += 1
        assert pieces.max() == 1 and offset[inside].max() < 16
        assert all(offset[i] + lengths[i] <= 16 for i in inside)


def test_bulk_translation_in_parts_equals_one_pass(translator, monkeypatch):
    texts = SENTENCES + ["Good night.", "The cat sleeps.", "We are late."]
    whole = translator.translate(texts, batch_size=2)
    monkeypatch.setattr(translator_module, "_REFILL_INPUTS", 3)  # 3 + 3 + 1
    parts = translator.translate(texts, batch_size=2)
    for one, other in zip(parts, whole):
        assert one.target_tokens == other.target_tokens
        assert one.token_probs == pytest.approx(other.token_probs, abs=1e-5)
    assert len({tuple(t.token_probs) for t in whole}) == len(texts)


def test_bulk_beam_search_streams_texts_and_equals_one_by_one(translator):
    texts = [f"Tom has {n} cats." for n in range(5)]
    bulk = translator.translate(texts, batch_size=2, beam_size=3)
    # Two streams of one input of 3 hypotheses each (`streams=2`).
    assert ("refill", 1, 32, 3, 0.6) in translator._searches
    for text, together in zip(texts, bulk):
        alone = translator.translate(text, beam_size=3)
        assert together.target_tokens == alone.target_tokens
        assert together.score == pytest.approx(alone.score, abs=1e-4)
        assert together.finished == alone.finished


def test_many_texts_are_decoded_by_two_searches_at_once_with_the_same_outputs(
    monkeypatch,
):
    # Bulk streams (texts of one source length) are dealt to two searches,
    # ordinary batches (the long texts) go two at a time: each on its own
    # thread, and every output as one search at a time would give.
    one = Translator.load(TINY, streams=1)
    two = Translator.load(TINY, streams=2)
    threads = {"share": set(), "batch": set()}
    share, run_search = two._refill_share, two._run_search

    # Each share waits until the other has started (a search that ran them
    # one after the other would break the barrier), so that which threads
    # run them does not depend on how fast the first one ends.
    both = threading.Barrier(2, timeout=60)

    def record(kind, fn):
        def recorded(*args, **kwargs):
            threads[kind].add(threading.get_ident())
            if kind == "share":
                both.wait()
            return fn(*args, **kwargs)

        return recorded

    monkeypatch.setattr(two, "_refill_share", record("share", share))
    monkeypatch.setattr(two, "_run_search", record("batch", run_search))
    texts = [f"Tom has {n} cats." for n in range(9)] + [
        "a " * (20 + n) for n in range(3)
    ]
    for beam_size in (1, 3):
        alone = one.translate(texts, batch_size=2, beam_size=beam_size)
        for kind in threads:
            threads[kind].clear()
        together = two.translate(texts, batch_size=2, beam_size=beam_size)
        for a, b in zip(alone, together):
            assert a.target_tokens == b.target_tokens
            assert a.score == pytest.approx(b.score, abs=1e-4)
        # One pool of two threads, neither of them the caller's: the two
        # shares at once, the batches on the same threads as they free up.
        assert len(threads["share"]) == 2 and threads["batch"] <= threads["share"]
        assert threading.get_ident() not in threads["share"]
    assert ("refill", 2, 32, 0) in one._searches  # One stream of 2 rows
    assert ("refill", 2, 32, 0) in two._searches  # and two of 2 rows;
    assert ("refill", 2, 32, 3, 0.6) in one._searches  # beam search: 2 inputs
    assert ("refill", 1, 32, 3, 0.6) in two._searches  # in flight either way.


def test_a_bulk_stream_decodes_its_longest_sources_first(monkeypatch):
    # So that its rows run out of texts together at the end, each share's
    # texts go in from the longest source to the shortest; the outputs come
    # back in the caller's order.
    two = Translator.load(TINY, streams=2)
    fed = []
    share = two._refill_share

    def record(items, *args):
        fed.append([len(ids) for ids, _, _ in items])
        return share(items, *args)

    monkeypatch.setattr(two, "_refill_share", record)
    texts = [" ".join(["Tom"] + ["is"] * n + ["here."]) for n in (3, 0, 5, 1, 4, 2)]
    together = two.translate(texts, batch_size=2)
    assert len(fed) == 2 and all(len(lengths) == 3 for lengths in fed)
    for lengths in fed:
        assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == 3
    for text, one in zip(texts, together):
        assert one.source_tokens == two.translate(text).source_tokens


def test_one_job_of_each_program_starts_before_the_others():
    # The searches' threads then compile different programs at once.
    jobs = [("bulk", 1), ("bulk", 2), ("batch", 3), ("batch", 4), ("long", 5)]
    assert translator_module._firsts_first(jobs, program=lambda job: job[0]) == [
        ("bulk", 1),
        ("batch", 3),
        ("long", 5),
        ("bulk", 2),
        ("batch", 4),
    ]


def test_the_searches_threads_compile_in_the_callers_mode():
    translator = Translator.load(TINY, streams=2)
    two_kinds = keras.backend.backend() == "tensorflow"
    texts = [f"Tom has {n} cats." for n in range(9)] + [
        "a " * (20 + n) for n in range(3)
    ]
    with translator.compiling("quick"):
        translator.translate(texts, batch_size=2)
    programs = translator.compiled_programs
    assert programs == 4  # The batches' search, the encoder, the bulk search
    assert translator.quick_programs == (programs if two_kinds else 0)  # x 2.


def test_streams_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="streams"):
        Translator.load(TINY, streams=0)


def test_a_last_partial_batch_of_many_takes_the_full_batches_shape():
    fresh = Translator.load(TINY)
    # Batches of 4 texts and one of 1: one compiled program, not two.
    texts = SENTENCES + ["Good night."]
    together = fresh.translate(texts, batch_size=4)
    assert fresh.compiled_programs == 1
    for text, one in zip(texts, together):
        assert one.target_tokens == fresh.translate(text).target_tokens


def test_empty_input_does_not_call_the_model(translator):
    translator._searches.clear()
    for text in ["", "   ", "\n\t"]:
        t = translator.translate(text, return_attention=True)
        assert t.text == "" and t.target_tokens == []
        assert t.attention["cross"].shape[2:] == (0, 0)
    assert translator._searches == {}


def test_long_input_is_truncated_not_an_error(translator):
    t = translator.translate("Tom is here. " * 200)
    assert t.truncated
    assert len(t.source_tokens) == translator.max_source_length


def test_unknown_characters_map_to_unk(translator):
    t = translator.translate("日本語 😀 \u202eשלום\x00\x07")
    # Three words of characters the tokenizer never saw; control characters
    # are dropped before tokenizing, so nothing else remains.
    assert [p for p in t.source_tokens if p != "▁"] == ["<unk>"] * 3


def test_beam_search_n_best(translator):
    t = translator.translate("I love you.", beam_size=3, n_best=3)
    assert len(t.n_best) == 2
    assert t.score >= t.n_best[0].score >= t.n_best[1].score
    with pytest.raises(ValueError, match="n_best"):
        translator.translate("x", beam_size=2, n_best=3)


def test_disabled_heads_change_attention_and_reuse_compilation(translator):
    plain = translator.translate("Where is the station?")
    count = len(translator._searches)
    ablated = translator.translate(
        "Where is the station?",
        disabled_heads={"cross": [(0, 0), (0, 1), (1, 0), (1, 1)]},
    )
    assert len(translator._searches) == count  # Head masks are inputs.
    assert not np.allclose(plain.token_probs[:1], ablated.token_probs[:1])
    with pytest.raises(ValueError, match="layers"):
        translator.translate("x", disabled_heads={"cross": [(5, 0)]})


def test_cli_translates_arguments_and_stdin(tmp_path, capsys):
    out = tmp_path / "att.npz"
    translate_main(["--model", str(TINY), "--attention", str(out), "I love you."])
    # One line per text, the translation itself.
    expected = Translator.load(TINY).translate("I love you.").text
    assert capsys.readouterr().out == expected + "\n"
    arrays = np.load(out)
    assert arrays["cross_attention"].ndim == 4
    result = subprocess.run(
        [sys.executable, "-m", "keras_mha.translate", "--model", str(TINY)],
        input="I love you.\nTom is here.\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 2


@pytest.mark.slow
@pytest.mark.cross_backend
@pytest.mark.parametrize("folder", [TINY] + SHIPPED, ids=lambda p: p.name)
def test_tensorflow_and_jax_produce_the_same_tokens(folder, tmp_path):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"

    # Tokens and the top-3 alternatives of every step, probabilities rounded.
    def summarize(translations):
        return [
            [
                x.target_tokens,
                [[[p, round(q, 3)] for p, q in a] for a in x.alternatives],
            ]
            for x in translations
        ]

    here = summarize(Translator.load(folder).translate(SENTENCES, top_k=3))
    script = (
        "import json, sys; from keras_mha import Translator; "
        f"t = Translator.load({str(folder)!r}); "
        f"x = t.translate({SENTENCES!r}, top_k=3); "
        "print(json.dumps([[y.target_tokens, [[[p, round(q, 3)] for p, q in a] "
        "for a in y.alternatives]] for y in x]))"
    )
    env = dict(os.environ, KERAS_BACKEND=other)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    there = json.loads(result.stdout.strip().splitlines()[-1])
    for (tokens, alternatives), (other_tokens, other_alternatives) in zip(here, there):
        assert tokens == other_tokens
        for mine, theirs in zip(alternatives, other_alternatives):
            assert [p for p, _ in mine] == [p for p, _ in theirs]
            np.testing.assert_allclose(
                [q for _, q in mine], [q for _, q in theirs], atol=2e-3
            )


# ------------------------------------------------------------ alternatives
def test_alternatives_are_sorted_and_start_with_the_greedy_choice(translator):
    t = translator.translate("Where is the station?", top_k=4)
    assert len(t.alternatives) == len(t.target_tokens)
    for piece, prob, alternatives in zip(
        t.target_tokens, t.token_probs, t.alternatives
    ):
        assert len(alternatives) == 4
        probs = [q for _, q in alternatives]
        assert probs == sorted(probs, reverse=True)
        assert alternatives[0][0] == piece
        assert np.isclose(alternatives[0][1], prob, atol=1e-6)
    assert translator.translate("Hi!").alternatives == []


def test_alternatives_batched_equal_one_by_one(translator):
    batched = translator.translate(SENTENCES, top_k=3)
    for sentence, together in zip(SENTENCES, batched):
        alone = translator.translate(sentence, top_k=3)
        assert [[p for p, _ in a] for a in alone.alternatives] == [
            [p for p, _ in a] for a in together.alternatives
        ]


def test_each_beam_hypothesis_has_its_own_alternatives(translator):
    t = translator.translate("I love you.", beam_size=3, n_best=3, top_k=2)
    for hypothesis in [t] + t.n_best:
        assert len(hypothesis.alternatives) == len(hypothesis.target_tokens)
        for piece, alternatives in zip(
            hypothesis.target_tokens, hypothesis.alternatives
        ):
            # The piece taken is one the search weighed, though not always
            # the most probable one (it keeps the best whole hypotheses).
            assert all(
                q1 >= q2 for (_, q1), (_, q2) in zip(alternatives, alternatives[1:])
            )


# ------------------------------------------------------------ forced prefix
def test_prefix_pieces_come_first_then_decoding_is_free(translator):
    free = translator.translate("Where is the station?", top_k=1)
    forced = translator.translate(
        "Where is the station?", prefix=["▁Tom", "▁es"], top_k=1
    )
    assert forced.target_tokens[:2] == ["▁Tom", "▁es"]
    assert forced.prefix_length == 2
    # After the prefix every piece is the model's own first choice.
    for piece, alternatives in zip(forced.target_tokens[2:], forced.alternatives[2:]):
        assert piece == alternatives[0][0]
    assert forced.target_tokens != free.target_tokens
    assert forced.text.startswith("Tom es")


def test_prefix_as_text_is_tokenized_like_a_translation(translator):
    by_text = translator.translate("I love you.", prefix="Tom es")
    by_pieces = translator.translate("I love you.", prefix=["▁Tom", "▁es"])
    assert by_text.target_tokens == by_pieces.target_tokens


def test_prefix_batched_equals_one_by_one(translator):
    prefixes = ["Tom", None, ["▁a"], ""]
    batched = translator.translate(SENTENCES, prefix=prefixes)
    for sentence, prefix, together in zip(SENTENCES, prefixes, batched):
        alone = translator.translate(sentence, prefix=prefix)
        assert alone.target_tokens == together.target_tokens
    # An empty prefix forces nothing.
    assert batched[3].target_tokens == translator.translate(SENTENCES[3]).target_tokens


def test_prefix_with_beam_search(translator):
    t = translator.translate("I love you.", beam_size=3, n_best=3, prefix="Tom")
    for hypothesis in [t] + t.n_best:
        assert hypothesis.target_tokens[0] == "▁Tom"


def test_bad_prefixes_are_clear_errors(translator):
    with pytest.raises(ValueError, match="unknown piece 'zzqq'"):
        translator.translate("Hi!", prefix=["▁a", "zzqq"])
    with pytest.raises(ValueError, match="control piece"):
        translator.translate("Hi!", prefix=["<s>"])
    with pytest.raises(ValueError, match="at most"):
        translator.translate("Hi!", prefix=["▁a"] * translator.model.max_length)
    with pytest.raises(ValueError, match="one prefix or a list of 2"):
        translator.translate(["Hi!", "Ho!"], prefix=["a", "b", "c"])
    # The longest prefix that fits leaves room for the end piece only.
    longest = ["▁a"] * (translator.model.max_length - 1)
    t = translator.translate("Hi!", prefix=longest)
    assert t.target_tokens[:-1] == longest


def test_the_default_output_limit_is_twice_the_padded_source(translator):
    # The tiny model never ends a translation, so every output is as long
    # as its limit. The same weights with room for 128 output pieces (the
    # positions are sinusoidal, not weights):
    config = {**translator.model.get_config(), "max_length": 128}
    model = Transformer.from_config(config)
    ids = np.ones((1, 4), "int32")
    model({"encoder_inputs": ids, "decoder_inputs": ids})
    model.set_weights(translator.model.get_weights())
    roomy = Translator(model, translator.tokenizer)
    words = " ".join(["a"] * 20)  # 21 pieces with the end: padded to 32.
    assert 16 < len(roomy.translate(words).source_tokens) <= 32

    def length(text, **kwargs):
        translation = roomy.translate(text, **kwargs)
        assert not translation.finished
        return len(translation.target_tokens)

    assert roomy.output_length(3) == 32
    assert length("Hi!") == 32  # A source of up to 16 pieces.
    assert length(words) == 64
    assert [len(t.target_tokens) for t in roomy.translate(["Hi!", words])] == [64] * 2
    # A longer prefix makes room for itself; `max_length` sets the limit.
    forced = roomy.translate("Hi!", prefix=["▁a"] * 40)
    assert forced.target_tokens[:40] == ["▁a"] * 40
    assert 40 < len(forced.target_tokens) <= 128
    assert length("Hi!", max_length=100) == 100


# ------------------------------------------------------------ scoring
def test_scoring_the_greedy_output_reproduces_it(translator):
    # The tiny model never ends a translation: cut it short, and the score
    # adds the end piece (scored too) after the same pieces.
    decoded = translator.translate(
        "Where is the station?", top_k=3, max_length=12, return_attention=True
    )
    scored = translator.score("Where is the station?", decoded.target_tokens, top_k=3)
    n = len(decoded.target_tokens)
    assert scored.target_tokens == decoded.target_tokens + ["</s>"]
    np.testing.assert_allclose(scored.token_probs[:n], decoded.token_probs, atol=1e-5)
    assert np.isclose(
        scored.score, decoded.score + np.log(scored.token_probs[n]), atol=1e-4
    )
    np.testing.assert_allclose(
        scored.attention["encoder"], decoded.attention["encoder"], atol=1e-5
    )
    np.testing.assert_allclose(
        scored.attention["cross"][:, :, :n], decoded.attention["cross"], atol=1e-5
    )
    np.testing.assert_allclose(
        scored.attention["decoder"][:, :, :n, :n],
        decoded.attention["decoder"],
        atol=1e-5,
    )
    assert [[p for p, _ in a] for a in scored.alternatives[:n]] == [
        [p for p, _ in a] for a in decoded.alternatives
    ]


def test_score_takes_text_or_pieces_with_or_without_the_end(translator):
    by_text = translator.score("I love you.", "Te quiero.")
    pieces = translator._pieces(translator.tokenizer.encode("Te quiero."))
    by_pieces = translator.score("I love you.", pieces)
    with_end = translator.score("I love you.", pieces + ["</s>"])
    assert by_text.target_tokens == by_pieces.target_tokens == pieces + ["</s>"]
    np.testing.assert_allclose(by_text.token_probs, with_end.token_probs, atol=1e-6)
    assert by_text.text == "Te quiero."
    assert np.isclose(by_text.score, np.sum(np.log(by_text.token_probs)), atol=1e-4)
    S, T = len(by_text.source_tokens), len(by_text.target_tokens)
    assert by_text.attention["cross"].shape == (2, 2, T, S)
    assert len(by_text.alternatives) == T


def test_score_batched_equals_one_by_one(translator):
    targets = ["Te quiero.", "Tom está aquí.", "¿Dónde está la estación?", ""]
    batched = translator.score(SENTENCES, targets)
    for sentence, target, together in zip(SENTENCES, targets, batched):
        alone = translator.score(sentence, target)
        np.testing.assert_allclose(alone.token_probs, together.token_probs, atol=1e-5)
    assert batched[3].target_tokens == ["</s>"]


def test_bad_score_targets_are_clear_errors(translator):
    with pytest.raises(ValueError, match="unknown piece"):
        translator.score("Hi!", ["▁Hola", "qqzz"])
    with pytest.raises(ValueError, match="at most max_length"):
        translator.score("Hi!", ["▁a"] * translator.model.max_length)
    with pytest.raises(ValueError, match="one entry per source"):
        translator.score(["Hi!", "Ho!"], ["Hola"])


# ------------------------------------------------------------ the beam's tree
def test_beam_steps_lead_back_from_every_hypothesis(translator):
    t = translator.translate(
        "I love you.", beam_size=3, n_best=3, return_beam=True, max_length=12
    )
    assert t.beam_steps and all(len(step) <= 3 for step in t.beam_steps)
    assert len(t.beam_steps[0]) == 3 and {h["parent"] for h in t.beam_steps[0]} == {-1}
    for hypothesis in [t] + t.n_best:
        slot, pieces = hypothesis.beam_slot, []
        for step in reversed(t.beam_steps):
            pieces.append(step[slot]["piece"])
            slot = step[slot]["parent"]
        assert slot == -1
        spelled = [p for p in reversed(pieces) if p != "<pad>"]
        assert spelled == hypothesis.target_tokens
    last = t.beam_steps[-1][t.beam_slot]
    assert np.isclose(last["score"], t.score, atol=1e-5)
    assert translator.translate("I love you.", beam_size=3).beam_steps == []


# ------------------------------------------------------------ command line
def test_cli_top_k_prefix_score_and_align(capsys):
    translate_main(["--model", str(TINY), "--prefix", "Tom", "--top-k", "2", "Hi!"])
    captured = capsys.readouterr()
    assert captured.out.startswith("Tom")
    assert captured.err.count("|") == len(
        Translator.load(TINY).translate("Hi!", prefix="Tom").target_tokens
    )
    translate_main(["--model", str(TINY), "--score", "Hola.", "Hi!"])
    captured = capsys.readouterr()
    assert captured.out == "Hola.\n"
    assert "score -" in captured.err
    translate_main(
        [
            "--model",
            str(TINY),
            "--score",
            "Hola amigo.",
            "--align",
            "average",
            "Hi there!",
        ]
    )
    out_lines = capsys.readouterr().out.splitlines()
    assert out_lines[0] == "Hola amigo."
    links = [tuple(map(int, link.split("-"))) for link in out_lines[1].split()]
    assert sorted(j for _, j in links) == [0, 1]  # One link per target word.
    assert all(0 <= i < 2 for i, _ in links)
    with pytest.raises(SystemExit, match="method"):
        translate_main(["--model", str(TINY), "--align", "nope", "Hi!"])
    # The default method runs the model again without each source word.
    flags = ["--model", str(TINY), "--score", "Hola amigo.", "--align"]
    translate_main([*flags, "deletion+diag+inter", "Hi there!"])
    links = capsys.readouterr().out.splitlines()[1].split()
    assert 1 <= len(links) <= 2  # At most one per word on either side.
    with pytest.raises(SystemExit, match="rule"):
        translate_main([*flags, "deletion+nope", "Hi there!"])


def test_beam_steps_hold_one_hypothesis_while_a_prefix_is_forced(translator):
    t = translator.translate(
        "I love you.",
        beam_size=3,
        prefix=["▁Tom", "▁es"],
        return_beam=True,
        max_length=40,
    )
    assert [len(step) for step in t.beam_steps[:3]] == [1, 1, 3]
    assert [step[0]["piece"] for step in t.beam_steps[:2]] == ["▁Tom", "▁es"]
    assert [h["parent"] for h in t.beam_steps[2]] == [0, 0, 0]


# ------------------------------------------------------------ hardening
EN_ES = ROOT / "saved_models" / "en-es"


@pytest.mark.skipif(not (EN_ES / "model.keras").exists(), reason="no shipped en-es")
def test_a_padded_batch_stops_when_its_real_rows_end(monkeypatch):
    # A trained model ends its outputs (the tiny fixture model rarely does).
    translator = Translator.load(EN_ES)
    steps = []
    run = Translator._run_search

    def spy(self, *args):
        out = run(self, *args)
        steps.append(int(out["steps"]))
        return out

    monkeypatch.setattr(Translator, "_run_search", spy)
    # Two texts are padded to four rows; the padding rows see no source.
    translations = translator.translate(["Hi!", "I love you."])
    assert steps == [max(len(t.target_tokens) for t in translations)]


def test_translations_own_their_attention(translator):
    # No view into the batch's buffers: a Translation keeps only its own.
    texts = ["Hi!", "I love you.", "Tom is here."]
    for beam_size in (1, 3):
        for t in translator.translate(
            texts, beam_size=beam_size, n_best=beam_size, return_attention=True
        ):
            for hypothesis in [t] + t.n_best:
                for array in hypothesis.attention.values():
                    assert array.base is None and array.flags.owndata
            if t.n_best:  # One encoder map, shared by the hypotheses.
                assert t.n_best[0].attention["encoder"] is t.attention["encoder"]


def test_beam_hypotheses_say_whether_they_ended(translator):
    t = translator.translate("I love you.", beam_size=3, n_best=3, max_length=6)
    for hypothesis in [t] + t.n_best:
        assert hypothesis.finished == (hypothesis.target_tokens[-1:] == ["</s>"])
    flags = [h.finished for h in [t] + t.n_best]
    assert flags == sorted(flags, reverse=True)


def test_a_long_prefix_and_a_large_alpha_keep_the_beam_record_whole(translator):
    prefix = translator.translate("I love you.", max_length=16).target_tokens[:-1]
    t = translator.translate(
        "I love you.",
        beam_size=3,
        n_best=3,
        length_penalty=5.0,
        prefix=prefix[:12],
        return_beam=True,
        max_length=20,
    )
    assert [len(step) for step in t.beam_steps[:12]] == [1] * 12
    for hypothesis in [t] + t.n_best:
        assert hypothesis.beam_slot is not None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"beam_size": 2, "n_best": 1.5}, "n_best"),
        ({"beam_size": 2, "n_best": 3}, "n_best"),
    ],
)
def test_bad_batch_sizes_and_n_best_are_refused(translator, options, message):
    with pytest.raises(ValueError, match=message):
        translator.translate(["Hi!"], **options)
    if "batch_size" in options:
        with pytest.raises(ValueError, match="batch_size"):
            translator.score(["Hi!"], ["Hola."], batch_size=options["batch_size"])


def test_a_prefix_with_characters_the_vocabulary_lacks_is_refused(translator):
    with pytest.raises(
        ValueError, match=r"characters the model's vocabulary lacks: '<', '>'"
    ):
        translator.translate("Hi!", prefix="<b>Hola")
    with pytest.raises(ValueError, match="'✈'"):
        translator.translate(["Hi!"], prefix=["Hola ✈"])
    # A translation a person wrote is scored as it is: `<unk>` for those.
    assert "<unk>" in translator.score("Hi!", "Hola ✈").target_tokens


def test_greedy_search_compiles_one_program_for_every_length_penalty(translator):
    # Greedy decoding has no length penalty: it is not part of its key.
    translator.translate("Hi there!", length_penalty=0.6)
    programs = translator.compiled_programs
    translator.translate("Hi there!", length_penalty=1.0)
    translator.translate("Hi there!", length_penalty=0.0)
    assert translator.compiled_programs == programs
    translator.translate("Hi there!", beam_size=2, length_penalty=1.0)
    translator.translate("Hi there!", beam_size=2, length_penalty=0.0)
    assert translator.compiled_programs == programs + 2


def _beam_record(translation):
    """What a beam search shows: each hypothesis, the tree and the
    alternatives (pieces), and the scores of both."""
    hypotheses = [translation, *translation.n_best]
    pieces = (
        [h.target_tokens for h in hypotheses],
        [h.beam_slot for h in hypotheses],
        [[(s["parent"], s["piece"]) for s in step] for step in translation.beam_steps],
        [[piece for piece, _ in step] for step in translation.alternatives],
    )
    scores = [h.score for h in hypotheses] + [
        s["score"] for step in translation.beam_steps for s in step
    ]
    return pieces, np.array(scores)


def test_beam_slots_run_every_beam_size_in_one_program_with_the_same_results():
    # A server offering several beam sizes compiles one beam program of K
    # slots; each beam size k <= K finds exactly what a search of k finds.
    shared = Translator.load(TINY, beam_slots=6)
    plain = Translator.load(TINY)
    sources = ["I love you.", "Where is the station?", "Hi!"]
    for beam_size in (2, 3, 4, 6):
        for prefix in (None, "Te"):
            options = dict(
                beam_size=beam_size,
                n_best=beam_size,
                return_beam=True,
                top_k=3,
                max_length=12,
                prefix=prefix,
                return_attention=True,
            )
            got = shared.translate(sources, **options)
            want = plain.translate(sources, **options)
            for a, b in zip(got, want):
                (pieces_a, scores_a), (pieces_b, scores_b) = map(_beam_record, (a, b))
                assert pieces_a == pieces_b
                np.testing.assert_allclose(scores_a, scores_b, atol=1e-4)
                np.testing.assert_allclose(
                    a.attention["cross"], b.attention["cross"], atol=1e-6
                )
    # One beam program for the four beam sizes (one source bucket).
    assert shared.compiled_programs == 1
    assert plain.compiled_programs == 4
    with pytest.raises(ValueError, match="beam_slots"):
        Translator.load(TINY, beam_slots=0)


def test_a_quick_program_serves_its_shape_until_a_full_one_is_compiled():
    # Within `compiling("quick")` a new shape gets a program that compiles
    # fast (TensorFlow: without XLA; JAX has one kind of program); it then
    # serves that shape until `compiling("full")` (a warm-up) compiles the
    # XLA one, which replaces it. Both find the same tokens.
    translator = Translator.load(TINY)
    two_kinds = keras.backend.backend() == "tensorflow"
    with translator.compiling("quick"):
        quick = translator.translate(SENTENCES, top_k=3)
    assert translator.compiled_programs == 1
    assert translator.quick_programs == (1 if two_kinds else 0)
    translator.translate(SENTENCES, top_k=3)  # Served by the quick one.
    assert translator.compiled_programs == 1
    with translator.compiling("full"):
        full = translator.translate(SENTENCES, top_k=3)
    # The full program replaces the quick one.
    assert (translator.compiled_programs, translator.quick_programs) == (1, 0)
    translator.translate(SENTENCES, top_k=3)
    assert translator.compiled_programs == 1
    for a, b in zip(quick, full):
        assert a.target_tokens == b.target_tokens
        np.testing.assert_allclose(a.token_probs, b.token_probs, atol=1e-5)
    with pytest.raises(ValueError, match="quick"):
        with translator.compiling("fast"):
            pass
