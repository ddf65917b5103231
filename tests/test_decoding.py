"""Cached greedy and beam search: the specification of keras_mha.decoding."""

import pathlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_mha import decoding
from keras_mha.decoding import (
    REFILL_LAYOUT,
    STATE_LAYOUT,
    BeamSearch,
    GreedySearch,
    RefillBeamSearch,
    RefillGreedySearch,
    beam_search,
    compile_search,
    encode_inputs,
    greedy_search,
    greedy_search_uncached,
    teacher_forced_scores,
)
from keras_mha.transformer import Transformer

BOS, EOS = 2, 3


def _tiny_model(seed, **kwargs):
    keras.utils.set_random_seed(seed)
    return Transformer(
        40,
        40,
        num_encoder_layers=2,
        num_decoder_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_heads=2,
        dropout=0.0,
        max_length=24,
        share_embeddings=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def model():
    return _tiny_model(7)


@pytest.fixture(scope="module")
def source():
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 40, (3, 7)).astype("int32")
    ids[1, 4:] = 0  # One padded source: S differs per row.
    return ids


def _np(x):
    return ops.convert_to_numpy(x)


def test_cached_greedy_equals_uncached_greedy(model, source):
    cached = _np(greedy_search(model, source, 10, BOS, EOS)["tokens"])
    uncached = _np(greedy_search_uncached(model, source, 10, BOS, EOS))
    np.testing.assert_array_equal(cached, uncached)


def test_the_greedy_choice_is_the_first_most_probable_piece():
    # Ties go to the lower id, as `argmax` breaks them; a row whose largest
    # value comes last, and one of equal values.
    log_probs = np.log(
        np.array(
            [
                [0.1, 0.4, 0.1, 0.4],
                [0.1, 0.2, 0.3, 0.4],
                [0.25, 0.25, 0.25, 0.25],
                [0.7, 0.1, 0.1, 0.1],
            ],
            "float32",
        )
    )
    chosen = decoding._argmax(ops.convert_to_tensor(log_probs))
    assert ops.dtype(chosen) == "int32"
    np.testing.assert_array_equal(_np(chosen), [1, 3, 0, 0])
    wide = np.random.default_rng(3).standard_normal((64, 6000)).astype("float32")
    np.testing.assert_array_equal(
        _np(decoding._argmax(ops.convert_to_tensor(wide))), wide.argmax(-1)
    )


def test_log_probs_from_the_normalizer_equal_the_log_softmax_bit_for_bit():
    # The greedy searches compute a few pieces' log-probabilities from each
    # row's two log-softmax terms instead of the whole (R, V) log-softmax.
    logits = np.random.default_rng(0).normal(scale=4.0, size=(5, 300))
    logits = ops.convert_to_tensor(logits.astype("float32"))
    normalizer = decoding._log_normalizer(logits)
    np.testing.assert_array_equal(
        _np(decoding._log_probs(logits, normalizer)),
        _np(ops.log_softmax(logits, axis=-1)),
    )
    token, log_prob = decoding._greedy_choice(logits, normalizer)
    np.testing.assert_array_equal(_np(token), _np(logits).argmax(-1))
    np.testing.assert_array_equal(
        _np(log_prob), _np(ops.log_softmax(logits, axis=-1)).max(-1)
    )


def test_recorded_attention_equals_teacher_forced_pass(model, source):
    out = greedy_search(model, source, 10, BOS, EOS)
    tokens = _np(out["tokens"])
    decoder_inputs = np.concatenate(
        [np.full((3, 1), BOS, "int32"), tokens[:, :-1]], axis=1
    )
    full = model(
        {"encoder_inputs": source, "decoder_inputs": decoder_inputs},
        return_attention_scores=True,
    )
    for row in range(3):
        ended = np.flatnonzero(tokens[row] == EOS)
        T = ended[0] + 1 if len(ended) else 10
        S = int(np.sum(source[row] != 0))
        for layer in range(2):
            np.testing.assert_allclose(
                _np(out["cross"])[layer, row, :, :T, :S],
                _np(full["cross_attentions"][layer])[row, :, :T, :S],
                atol=1e-5,
            )
            np.testing.assert_allclose(
                _np(out["decoder"])[layer, row, :, :T, :T],
                _np(full["decoder_attentions"][layer])[row, :, :T, :T],
                atol=1e-5,
            )
            np.testing.assert_allclose(
                _np(out["encoder"])[layer, row, :, :S, :S],
                _np(full["encoder_attentions"][layer])[row, :, :S, :S],
                atol=1e-5,
            )


def test_log_probs_match_the_full_pass(model, source):
    out = greedy_search(model, source, 6, BOS, EOS, return_attention=False)
    assert "cross" not in out
    tokens = _np(out["tokens"])
    decoder_inputs = np.concatenate(
        [np.full((3, 1), BOS, "int32"), tokens[:, :-1]], axis=1
    )
    logits = _np(model({"encoder_inputs": source, "decoder_inputs": decoder_inputs}))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_probs, tokens[..., None], -1)[..., 0]
    finished = np.cumsum(tokens == EOS, axis=1) - (tokens == EOS) > 0
    expected[finished] = 0.0
    np.testing.assert_allclose(_np(out["log_probs"]), expected, atol=1e-4)


def test_beam_of_one_is_greedy(model, source):
    greedy = _np(greedy_search(model, source, 10, BOS, EOS)["tokens"])
    beam = _np(beam_search(model, source, 10, BOS, EOS, beam_size=1)["tokens"])
    np.testing.assert_array_equal(beam[:, 0], greedy)


def test_beam_search_ranks_finished_first_by_score_and_beats_greedy(model, source):
    out = beam_search(model, source, 10, BOS, EOS, beam_size=4, length_penalty=0.0)
    scores, finished = _np(out["scores"]), _np(out["finished"])
    assert scores.shape == finished.shape == (3, 4)
    # Finished hypotheses first, then those cut off by max_length: a cut-off
    # one may score higher, but it is not a translation yet.
    assert np.all(np.diff(finished.astype(int), axis=1) <= 0)
    for row_scores, row_finished in zip(scores, finished):
        for group in (row_finished, ~row_finished):
            assert np.all(np.diff(row_scores[group]) <= 1e-6)
    greedy = _np(greedy_search(model, source, 10, BOS, EOS)["log_probs"]).sum(-1)
    # With alpha = 0 the score is the log-probability: beam search never
    # returns a worse best hypothesis than greedy on these inputs.
    assert np.all(scores[:, 0] >= greedy - 1e-4)
    assert _np(out["cross"]).shape == (2, 3, 4, 2, 10, 7)


def test_beam_scores_are_the_hypotheses_log_probs(model, source):
    out = beam_search(model, source, 10, BOS, EOS, beam_size=3, length_penalty=0.0)
    np.testing.assert_allclose(
        _np(out["scores"]), _np(out["log_probs"]).sum(-1), atol=1e-4
    )


def test_head_mask_changes_the_search(model, source):
    ones = {k: ops.ones((2, 2)) for k in ("encoder", "decoder", "cross")}
    plain = greedy_search(model, source, 8, BOS, EOS)
    same = greedy_search(model, source, 8, BOS, EOS, head_masks=ones)
    np.testing.assert_allclose(_np(plain["log_probs"]), _np(same["log_probs"]))
    off = dict(ones, cross=ops.zeros((2, 2)))
    ablated = greedy_search(model, source, 8, BOS, EOS, head_masks=off)
    assert not np.allclose(_np(plain["log_probs"]), _np(ablated["log_probs"]))


def test_compiled_search_equals_the_eager_one(model, source):
    search = GreedySearch(max_length=8, bos_id=BOS, eos_id=EOS, top_k=3)
    masks = {k: np.ones((2, 2), "float32") for k in ("encoder", "decoder", "cross")}
    compiled = compile_search(model, search)
    first = compiled(source, masks)
    again = compiled(source, masks)
    np.testing.assert_array_equal(_np(first["tokens"]), _np(again["tokens"]))
    eager = search(model, source, masks)
    for key in ("tokens", "alternative_ids"):
        np.testing.assert_array_equal(_np(first[key]), _np(eager[key]))
    np.testing.assert_allclose(_np(first["cross"]), _np(eager["cross"]), atol=1e-5)


SHIPPED_EN_DE = pathlib.Path(__file__).parents[1] / "saved_models" / "en-de-multi30k"


@pytest.mark.skipif(
    not (SHIPPED_EN_DE / "model.keras").exists(),
    reason="no shipped en-de-multi30k model",
)
def test_beam_search_stops_once_no_live_beam_can_win():
    # A trained model ends its hypotheses (the tiny fixture model never
    # does); the search must then stop long before `max_length`, and the
    # best hypothesis must not depend on how far it was allowed to run.
    import sentencepiece

    folder = SHIPPED_EN_DE
    trained = keras.saving.load_model(folder / "model.keras")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    sentences = [
        "A man in a blue shirt is riding a bike down the street.",
        "Two dogs play in the snow.",
        "A girl is reading a book.",
    ]
    ids = [sp.encode(s) + [sp.eos_id()] for s in sentences]
    source = np.zeros((len(ids), max(map(len, ids))), "int32")
    for row, sentence_ids in enumerate(ids):
        source[row, : len(sentence_ids)] = sentence_ids
    bos, eos = sp.bos_id(), sp.eos_id()
    outputs = [
        beam_search(trained, source, max_length, bos, eos, beam_size=4)
        for max_length in (40, 60)
    ]
    tokens = [_np(out["tokens"]) for out in outputs]  # (B, K, T) each
    written = np.flatnonzero(np.any(tokens[0] != 0, axis=(0, 1)))
    assert written.max() < 30  # Stopped early: nothing written after that.
    for short, long in zip(tokens[0][:, 0], tokens[1][:, 0]):
        assert eos in short  # The best hypotheses are finished ...
        np.testing.assert_array_equal(short, long[: len(short)])  # ... and equal.
        assert not long[len(short) :].any()


# ------------------------------------------------------------ alternatives
def _lengths(tokens):
    """Output length of each row, the end token included."""
    lengths = []
    for row in tokens:
        ended = np.flatnonzero(row == EOS)
        lengths.append(int(ended[0]) + 1 if len(ended) else int(np.sum(row != 0)))
    return lengths


def test_greedy_alternatives_are_sorted_and_start_with_the_choice(model, source):
    out = greedy_search(model, source, 10, BOS, EOS, top_k=4)
    tokens, ids = _np(out["tokens"]), _np(out["alternative_ids"])
    log_probs = _np(out["alternative_log_probs"])
    assert ids.shape == log_probs.shape == (3, 10, 4)
    assert np.all(np.diff(log_probs, axis=-1) <= 0)
    for row, length in enumerate(_lengths(tokens)):
        np.testing.assert_array_equal(ids[row, :length, 0], tokens[row, :length])
        np.testing.assert_allclose(
            log_probs[row, :length, 0], _np(out["log_probs"])[row, :length], atol=1e-6
        )


def test_alternatives_do_not_change_the_search(model, source):
    plain = greedy_search(model, source, 10, BOS, EOS)
    with_top_k = greedy_search(model, source, 10, BOS, EOS, top_k=5)
    np.testing.assert_array_equal(_np(plain["tokens"]), _np(with_top_k["tokens"]))
    beam = beam_search(model, source, 10, BOS, EOS, beam_size=3)
    beam_top_k = beam_search(model, source, 10, BOS, EOS, beam_size=3, top_k=5)
    np.testing.assert_array_equal(_np(beam["tokens"]), _np(beam_top_k["tokens"]))


# ------------------------------------------------------------ teacher forcing
def _teacher_forced(model, source, tokens, top_k=0):
    lengths = _lengths(tokens)
    labels = np.zeros_like(tokens)
    for row, length in enumerate(lengths):
        labels[row, :length] = tokens[row, :length]
    decoder_inputs = np.concatenate(
        [np.full((len(tokens), 1), BOS, "int32"), labels[:, :-1]], axis=1
    )
    decoder_inputs[labels == 0] = 0
    out = teacher_forced_scores(model, source, decoder_inputs, labels, top_k=top_k)
    return {k: _np(v) for k, v in out.items()}, lengths


def test_teacher_forced_scores_equal_the_cached_search(model, source):
    searched = greedy_search(model, source, 10, BOS, EOS, top_k=3)
    searched = {k: _np(v) for k, v in searched.items()}
    forced, lengths = _teacher_forced(model, source, searched["tokens"], top_k=3)
    for row, T in enumerate(lengths):
        np.testing.assert_allclose(
            forced["log_probs"][row, :T], searched["log_probs"][row, :T], atol=1e-5
        )
        np.testing.assert_array_equal(
            forced["alternative_ids"][row, :T], searched["alternative_ids"][row, :T]
        )
        np.testing.assert_allclose(
            forced["cross"][:, row, :, :T], searched["cross"][:, row, :, :T], atol=1e-5
        )
        np.testing.assert_allclose(
            forced["decoder"][:, row, :, :T, :T],
            searched["decoder"][:, row, :, :T, :T],
            atol=1e-5,
        )


# ------------------------------------------------------------ forced prefix
def test_prefix_is_forced_then_decoding_is_free(model, source):
    prefix = np.array([[7, 8, 9], [5, 0, 0], [0, 0, 0]], "int32")
    lengths = np.array([3, 1, 0], "int32")
    out = greedy_search(
        model, source, 10, BOS, EOS, top_k=1, prefix=prefix, prefix_lengths=lengths
    )
    tokens, best = _np(out["tokens"]), _np(out["alternative_ids"])[..., 0]
    np.testing.assert_array_equal(tokens[0, :3], [7, 8, 9])
    assert tokens[1, 0] == 5
    # After the prefix, every piece is the model's first choice again.
    for row, (start, end) in enumerate(zip(lengths, _lengths(tokens))):
        np.testing.assert_array_equal(tokens[row, start:end], best[row, start:end])
    # A row without a prefix decodes as without forcing.
    free = _np(greedy_search(model, source, 10, BOS, EOS)["tokens"])
    np.testing.assert_array_equal(tokens[2], free[2])
    # The forced pieces keep the model's own probabilities.
    forced, _ = _teacher_forced(model, source, tokens)
    np.testing.assert_allclose(forced["log_probs"], _np(out["log_probs"]), atol=1e-5)


def test_beam_search_with_a_prefix_starts_every_hypothesis_with_it(model, source):
    prefix = np.array([[7, 8], [5, 6], [9, 9]], "int32")
    out = beam_search(
        model,
        source,
        10,
        BOS,
        EOS,
        beam_size=3,
        prefix=prefix,
        prefix_lengths=np.array([2, 2, 1], "int32"),
    )
    tokens = _np(out["tokens"])  # (B, K, T)
    np.testing.assert_array_equal(tokens[0, :, :2], [[7, 8]] * 3)
    np.testing.assert_array_equal(tokens[1, :, :2], [[5, 6]] * 3)
    np.testing.assert_array_equal(tokens[2, :, 0], [9] * 3)
    # The hypotheses differ after the prefix.
    assert len({tuple(hypothesis) for hypothesis in tokens[0]}) == 3


# ------------------------------------------------------------ the beam's tree
def test_beam_record_follows_parents_back_to_the_output(model, source):
    out = beam_search(
        model, source, 10, BOS, EOS, beam_size=3, length_penalty=0.0, return_beam=True
    )
    out = {k: _np(v) for k, v in out.items()}
    steps = int(out["steps"])
    assert out["beam_parents"].shape == (3, 10, 3)
    for row in range(3):
        for k in range(3):
            slot, pieces = int(out["beam_slots"][row, k]), []
            for t in reversed(range(steps)):
                pieces.append(int(out["beam_tokens"][row, t, slot]))
                slot = int(out["beam_parents"][row, t, slot])
            pieces = pieces[::-1]
            np.testing.assert_array_equal(
                pieces, out["tokens"][row, k, :steps], err_msg=f"input {row} beam {k}"
            )
        # Recorded scores at the last step are the final ones.
        last = out["beam_scores"][row, steps - 1, out["beam_slots"][row]]
        np.testing.assert_allclose(last, out["scores"][row], atol=1e-5)


def test_the_loop_state_has_one_declared_layout(model, source, monkeypatch):
    # Every per-row tensor of the loop state is declared in STATE_LAYOUT:
    # its row axis holds the R = B * K hypotheses and a history's step axis
    # the T steps (T + 1 for the tokens, which start with <s>).
    seen = {}
    while_loop = decoding.ops.while_loop

    def spy(cond, body, state, **kwargs):
        seen.update(state)
        return while_loop(cond, body, state, **kwargs)

    monkeypatch.setattr(decoding.ops, "while_loop", spy)
    B, K, T = source.shape[0], 3, 10
    beam_search(
        model,
        source,
        T,
        BOS,
        EOS,
        beam_size=K,
        top_k=2,
        return_beam=True,
        return_attention=True,
        beam_widths=np.full((B,), 2),
    )
    assert set(seen) - {"index", "scores"} == set(STATE_LAYOUT)
    for key, axes in STATE_LAYOUT.items():
        shapes = (
            [tuple(x.shape) for layer in seen[key] for x in layer]
            if key == "cache"
            else [tuple(seen[key].shape)]
        )
        for shape in shapes:
            assert shape[axes.row] == B * K, key
            if axes.step is not None:
                assert shape[axes.step] == T + (key == "tokens"), key


def test_searches_reject_bad_settings():
    with pytest.raises(ValueError, match="max_length"):
        GreedySearch(max_length=0, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match="top_k"):
        GreedySearch(max_length=4, bos_id=BOS, eos_id=EOS, top_k=-1)
    with pytest.raises(ValueError, match="beam_size"):
        BeamSearch(beam_size=0, max_length=4, bos_id=BOS, eos_id=EOS)


# ------------------------------------------------------------ hardening
def test_rows_that_start_finished_stay_empty_and_do_not_hold_the_loop(model, source):
    # Batch padding: the rows of no input start finished, so the loop's early
    # stop waits for the real rows only.
    finished = np.array([False, True, True])
    for search in (
        GreedySearch(max_length=10, bos_id=BOS, eos_id=EOS),
        BeamSearch(beam_size=3, max_length=10, bos_id=BOS, eos_id=EOS),
    ):
        out = search(model, source, start_finished=finished)
        tokens = _np(out["tokens"])
        assert not tokens[1:].any()
        alone = search(model, source[:1])
        np.testing.assert_array_equal(tokens[:1], _np(alone["tokens"]))
        assert int(_np(out["steps"])) == int(_np(alone["steps"]))


def test_the_early_stop_bound_holds_for_a_negative_length_penalty():
    # alpha < 0: the penalty falls with length, so a live beam's best final
    # score is its score over the penalty of the next length, not of
    # `max_length`.
    search = BeamSearch(
        beam_size=2, length_penalty=-1.0, max_length=10, bos_id=BOS, eos_id=EOS
    )
    penalty = lambda n: ((5 + n) / 6) ** -1.0  # noqa: E731
    state = {
        "index": ops.convert_to_tensor(1, "int32"),
        "finished": ops.convert_to_tensor([True, False]),
        "lengths": ops.convert_to_tensor([1, 1], "int32"),
        # A finished hypothesis normalized to -2.0; a live one at -1.5 raw,
        # which reaches -1.5 / penalty(2) = -1.75 > -2.0 if it ends next.
        "scores": ops.convert_to_tensor([-2.0 * penalty(1), -1.5], "float32"),
    }
    assert not bool(_np(search.done(state)))
    state["scores"] = ops.convert_to_tensor([-2.0 * penalty(1), -1.9], "float32")
    assert bool(_np(search.done(state)))  # -1.9 / penalty(2) = -2.22 < -2.0


@pytest.mark.parametrize("length_penalty", [float("nan"), float("inf"), "0.6", True])
def test_a_length_penalty_must_be_a_finite_number(length_penalty):
    with pytest.raises(ValueError, match="length_penalty"):
        BeamSearch(length_penalty=length_penalty, max_length=4, bos_id=BOS, eos_id=EOS)


def test_beam_hypotheses_that_did_not_end_rank_after_those_that_did(model, source):
    # The tiny random model rarely ends a hypothesis: force some to end by a
    # prefix ending in EOS for row 0 only.
    prefix = np.array([[5, EOS], [0, 0], [0, 0]], "int32")
    out = beam_search(
        model,
        source,
        6,
        BOS,
        EOS,
        beam_size=3,
        prefix=prefix,
        prefix_lengths=np.array([2, 0, 0], "int32"),
    )
    finished = _np(out["finished"])  # (B, K)
    tokens = _np(out["tokens"])
    assert finished.shape == (3, 3)
    np.testing.assert_array_equal(finished, np.any(tokens == EOS, axis=-1))
    for row in finished:  # Finished first, then the rest.
        assert list(row) == sorted(row, reverse=True)


def test_beam_liveness_is_recorded_not_guessed_from_scores(model, source):
    # A long prefix with a large alpha lifts the normalized score of a never
    # live slot above any fixed threshold; the record says which were live.
    prefix = np.tile(np.arange(5, 19, dtype="int32"), (3, 1))  # (B, 14)
    out = beam_search(
        model,
        source,
        20,
        BOS,
        EOS,
        beam_size=3,
        length_penalty=5.0,
        prefix=prefix,
        prefix_lengths=np.full((3,), 14, "int32"),
        return_beam=True,
    )
    live = _np(out["beam_live"])  # (B, T, K)
    assert live.dtype == bool
    # While the prefix is forced only one hypothesis per input is live.
    np.testing.assert_array_equal(live[:, :14].sum(-1), 1)
    assert live[:, 14:20].sum(-1).min() == 3  # Then the beam fills.


# ------------------------------------------------------------ bulk search
@pytest.fixture(scope="module")
def varied_model():
    """A random model whose greedy outputs differ from row to row and from
    step to step (with tied output embeddings a tiny random model repeats
    one piece)."""
    return _tiny_model(4, tie_output=False)


def _ending_inputs(model):
    """Nine sources (two of them padded) and an end piece that ends their
    greedy outputs at different steps: of the pieces the random model
    outputs (it never picks `EOS` by itself), the one that first comes at
    the most different steps."""
    rng = np.random.default_rng(3)
    sources = rng.integers(4, 40, (9, 7)).astype("int32")
    sources[2, 3:] = 0
    sources[6, 5:] = 0
    free = _np(
        greedy_search(model, sources, 8, BOS, -1, return_attention=False)["tokens"]
    )

    def first_steps(piece):
        return {int(np.argmax(row == piece)) for row in free if (row == piece).any()}

    return sources, max(np.unique(free), key=lambda piece: len(first_steps(piece)))


@pytest.mark.parametrize("compiled", [False, True])
def test_the_bulk_search_gives_each_input_its_greedy_output(varied_model, compiled):
    model = varied_model
    sources, end = _ending_inputs(model)
    expected = greedy_search(model, sources, 8, BOS, end, return_attention=False)
    expected_tokens = _np(expected["tokens"])
    ends = [np.flatnonzero(row == end) for row in expected_tokens]
    # Outputs end at different steps, and some do not end at all.
    assert len({int(e[0]) for e in ends if len(e)}) > 1
    assert any(len(e) == 0 for e in ends)
    # Two rows for nine inputs (at most one new input per step), and three
    # rows of padding after them: rows take inputs as others end, and the
    # cache's eight columns are reused many times over.
    padded = np.concatenate([sources, np.zeros((3, 7), "int32")])
    padded[9:, 0] = end
    cross, mask = encode_inputs(model, padded)
    search = RefillGreedySearch(slots=2, max_length=8, bos_id=BOS, eos_id=end, lanes=1)
    if compiled:
        cross = [[_np(c) for c in pair] for pair in cross]
        out = compile_search(model, search)(cross, _np(mask), np.int32(9), None)
    else:
        out = search(model, cross, mask, 9)
    tokens = _np(out["tokens"])
    np.testing.assert_array_equal(tokens[:9], expected_tokens)
    assert not tokens[9:].any()  # Padding inputs are never decoded.
    np.testing.assert_allclose(
        _np(out["log_probs"])[:9], _np(expected["log_probs"]), atol=1e-5
    )
    np.testing.assert_allclose(
        _np(out["scores"])[:9], _np(expected["scores"]), atol=1e-4
    )
    np.testing.assert_array_equal(_np(out["finished"])[:9], [len(e) > 0 for e in ends])


def _lengths_until(tokens, end):
    """Output length of each row, `end` included."""
    return [
        int(np.flatnonzero(row == end)[0]) + 1 if (row == end).any() else len(row)
        for row in tokens
    ]


def test_the_bulk_search_records_each_steps_alternatives(varied_model):
    model = varied_model
    sources, end = _ending_inputs(model)
    expected = greedy_search(
        model, sources, 8, BOS, end, return_attention=False, top_k=3
    )
    cross, mask = encode_inputs(model, sources)
    search = RefillGreedySearch(slots=3, max_length=8, bos_id=BOS, eos_id=end, top_k=3)
    out = search(model, cross, mask, 9)
    lengths = _lengths_until(_np(expected["tokens"]), end)
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(
            _np(out["alternative_ids"])[row, :length],
            _np(expected["alternative_ids"])[row, :length],
        )
        np.testing.assert_allclose(
            _np(out["alternative_log_probs"])[row, :length],
            _np(expected["alternative_log_probs"])[row, :length],
            atol=1e-5,
        )


def test_the_bulk_search_decodes_each_input_with_its_head_masks(varied_model):
    model = varied_model
    sources, end = _ending_inputs(model)
    masks = {k: np.ones((2, 2), "float32") for k in ("encoder", "decoder", "cross")}
    masks["cross"][0, 1] = 0.0
    expected = greedy_search(
        model, sources, 8, BOS, end, head_masks=masks, return_attention=False
    )
    cross, mask = encode_inputs(model, sources, head_masks=masks)
    search = RefillGreedySearch(slots=4, max_length=8, bos_id=BOS, eos_id=end)
    out = search(model, cross, mask, 9, head_masks=masks)
    np.testing.assert_array_equal(_np(out["tokens"]), _np(expected["tokens"]))


@pytest.mark.parametrize("length_penalty", [0.6, -0.5])
def test_the_bulk_beam_search_gives_each_input_its_best_hypothesis(
    varied_model, length_penalty
):
    model = varied_model
    sources, end = _ending_inputs(model)
    expected = beam_search(
        model,
        sources,
        8,
        BOS,
        end,
        beam_size=3,
        length_penalty=length_penalty,
        return_attention=False,
    )
    padded = np.concatenate([sources, np.zeros((2, 7), "int32")])
    padded[9:, 0] = end
    cross, mask = encode_inputs(model, padded)
    # Two inputs of three beams at a time, one new input per step at most.
    search = RefillBeamSearch(
        slots=2,
        beam_size=3,
        max_length=8,
        bos_id=BOS,
        eos_id=end,
        length_penalty=length_penalty,
        lanes=1,
    )
    cross = [[_np(c) for c in pair] for pair in cross]
    out = compile_search(model, search)(cross, _np(mask), np.int32(9), None)
    best_tokens = _np(expected["tokens"])[:, 0]
    # Some searches end early, some run to the limit.
    lengths = _lengths_until(best_tokens, end)
    assert min(lengths) < 8 and len(set(lengths)) > 1
    np.testing.assert_array_equal(_np(out["tokens"])[:9], best_tokens)
    assert not _np(out["tokens"])[9:].any()
    np.testing.assert_allclose(
        _np(out["log_probs"])[:9], _np(expected["log_probs"])[:, 0], atol=1e-5
    )
    np.testing.assert_allclose(
        _np(out["scores"])[:9], _np(expected["scores"])[:, 0], atol=1e-4
    )
    np.testing.assert_array_equal(
        _np(out["finished"])[:9], _np(expected["finished"])[:, 0]
    )
    # A done input hands its rows on: fewer steps than nine searches of
    # eight steps, two at a time.
    assert int(out["steps"]) < 9 * 8 // 2


def test_the_bulk_searches_state_has_one_declared_layout(varied_model, monkeypatch):
    # Every tensor of the bulk searches' loop state is declared in
    # REFILL_LAYOUT, with G slots, R rows or M + G outputs first.
    model = varied_model
    states = []
    while_loop = decoding.ops.while_loop

    def spy(cond, body, state, **kwargs):
        states.append(dict(state))
        return while_loop(cond, body, state, **kwargs)

    monkeypatch.setattr(decoding.ops, "while_loop", spy)
    sources, end = _ending_inputs(model)
    cross, mask = encode_inputs(model, sources)
    common = dict(max_length=8, bos_id=BOS, eos_id=end)
    RefillGreedySearch(slots=4, top_k=2, **common)(model, cross, mask, 9)
    RefillBeamSearch(slots=2, beam_size=3, **common)(model, cross, mask, 9)
    greedy, beam = states[-2:]  # (The first: `_ending_inputs`.)
    assert set(greedy) | set(beam) == set(REFILL_LAYOUT)
    for state, G, R in ((greedy, 4, 4), (beam, 2, 6)):
        for key, value in state.items():
            first = REFILL_LAYOUT[key].split("(")[1].split(",")[0].rstrip(")")
            size = {"": None, "G": G, "R": R, "M + G": 9 + G}[first]
            tensors = (
                [x for layer in value for x in layer]
                if key in ("cache", "cross")
                else [value]
            )
            for x in tensors:
                shape = tuple(x.shape)
                assert (shape == ()) if size is None else shape[0] == size, key
