"""The app's handlers and payloads, called in-process on the tiny fixture
model (`explorer.build_demo`, no server).

The fixture model's translations are garbage; the tests check what the
handlers promise about any translation: shapes, the payload against the
`Translation` it came from, messages for bad input (never a traceback), and
that downloads are made only when asked for.
"""

import hashlib
import html
import importlib
import json
import math
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import types

import gradio as gr
import keras
import numpy as np
import pytest

from explorer import exports, models, payload
from explorer.models import LAYER_PREDICTIONS
from explorer.service import MAX_INPUT_CHARS
from explorer.state import ExplorerState, Request
from keras_mha import Translator, alignment
from keras_mha.tokens import EOS
from tests.app_fixtures import FIXTURE_MODELS, REPO_ROOT, TINY_MODEL, tiny_demo

SENTENCE = "Where is the train station?"


@pytest.fixture(scope="module")
def demo():
    demo, _ = tiny_demo()
    return demo


@pytest.fixture(scope="module")
def views(demo):
    return demo.explorer


@pytest.fixture(scope="module")
def shared(views):
    return views["translate"].shared


@pytest.fixture(scope="module")
def greedy(views):
    """The Translate button's named updates for `SENTENCE`, greedy."""
    return views["translate"].translate(SENTENCE, TINY_MODEL, "greedy", 4)


@pytest.fixture(scope="module")
def beam(views):
    """The same with beam search, beam 3."""
    return views["translate"].translate(SENTENCE, TINY_MODEL, "beam", 3)


def event(**data):
    """What a renderer's `trigger(name, data)` hands to a handler."""
    return gr.EventData(None, data)


def test_a_renderers_event_fields_are_read_as_gradio_documents_them():
    from explorer.views import event_value

    assert event_value(event(step=3), "step") == 3
    assert event_value(event(step=3), "piece", "") == ""
    assert event_value(gr.EventData(None, None), "step", 0) == 0
    assert event_value(None, "step", 1) == 1


def decode(p, kind):
    """A payload's attention of `kind` as `(N, H, rows, cols)` floats."""
    rows, cols = payload.AXES[kind]
    N, H = p["shape"][kind]
    shape = (N, H, len(p["tokens"][rows]), len(p["tokens"][cols]))
    return payload.decode_attention(p, kind).reshape(shape)


# ------------------------------------------------------------ structure
def test_importing_the_ui_loads_no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded at import time")

    monkeypatch.setattr(Translator, "load", refuse)
    for name in [m for m in sys.modules if m == "app" or m.startswith("explorer")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.import_module("explorer")
    app = importlib.import_module("app")
    assert callable(app.main)


def test_the_demo_has_one_view_per_tab_and_public_endpoints(demo):
    assert isinstance(demo, gr.Blocks)
    assert set(demo.explorer) == {
        "translate",
        "attention",
        "lines",
        "steps",
        "whatif",
        "score",
        "beam",
        "alignment",
        "attribution",
        "head",
        "heads",
        "ablation",
    }
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"translate", "score", "align", "attention", "attribute", "head"}


def test_browser_views_load_the_renderer_once_from_an_allowed_path(demo):
    from explorer.views import ASSETS, STATIC

    config = demo.get_config_file()
    views = [c for c in config["components"] if c["type"] == "html"]
    mounts = [v["props"]["js_on_load"] for v in views if v["props"].get("head")]
    assert len(mounts) >= 9
    heads = {v["props"]["head"] for v in views if v["props"].get("head")}
    assert len(heads) == 1  # The same tags: the browser loads them once.
    # The style sheet and every module but the entry (the import map).
    urls = re.findall(r"gradio_api/file=([^\"?]+)\?v=\w+", heads.pop())
    assert len(urls) == len(ASSETS) - 1
    # Every view imports the same entry module.
    entries = {re.search(r"gradio_api/file=([^\"?]+)\?v=", js)[1] for js in mounts}
    assert entries == {"explorer/static/explorer.js"}
    for url in urls + list(entries):
        path = pathlib.Path(url).resolve()
        assert path.is_file() and path.is_relative_to(STATIC)
    # The renderers that talk to the server name their events.
    assert any('"whatif"' in js for js in mounts)
    assert any('"pick"' in js for js in mounts)
    assert any('"export"' in js for js in mounts)
    assert any('"trace"' in js for js in mounts)


# ------------------------------------------------------------ models
def test_model_label_shows_the_test_bleu():
    card = {
        "languages": ["en", "de"],
        "evaluation": {
            "valid_greedy": {"split": "valid", "beam_size": 1, "bleu": 30.0},
            "test_beam4": {"split": "test", "beam_size": 4, "bleu": 35.14},
            "test_greedy": {"split": "test", "beam_size": 1, "bleu": 34.0},
        },
    }
    translator = types.SimpleNamespace(name="en-de", card=card)
    assert models.model_label(translator) == "English → German (en-de, BLEU 35.1)"
    bare = types.SimpleNamespace(name="mystery", card={})
    assert models.model_label(bare) == "mystery (no card)"


def fake(name, **card):
    return types.SimpleNamespace(name=name, card=card)


def test_domains_examples_and_the_default_model():
    captions = fake("en-de-multi30k", dataset="multi30k-en-de", languages=["en", "de"])
    everyday = fake("en-fr", dataset="fra-eng", languages=["en", "fr"])
    own = fake("x", domain="legal texts", examples=["The contract ends.", " "])
    assert models.domain(captions) == models.CAPTIONS
    assert models.domain(everyday) == models.EVERYDAY
    assert models.domain(own) == "legal texts"
    assert models.domain(fake("y")) == ""
    assert models.examples(own) == ["The contract ends."]
    assert models.examples(captions) == models.EXAMPLES[models.CAPTIONS]
    assert "captions" in models.domain_markdown(captions)
    # The caption model sorts first by name but is never the default; among
    # everyday-sentence models the best-scoring one is.
    better = fake("en-es", dataset="spa-eng", evaluation={"t": {"bleu": 46.0}})
    choices = {"a-captions": captions, "en-fr": everyday, "x": own}
    assert models.default_model(choices) == "en-fr"
    assert models.default_model({**choices, "en-es": better}) == "en-es"
    assert models.default_model({"a": captions, "x": own}) == "x"
    assert models.default_model({}) is None


def test_lazy_models_are_offered_from_their_cards_and_loaded_when_first_used(
    tmp_path,
):
    from explorer import build_demo

    shutil.copytree(FIXTURE_MODELS / TINY_MODEL, tmp_path / "good")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a zip file")
    translators, failures = models.load_models(tmp_path, lazy=True)
    assert list(translators) == ["good"] and list(failures) == ["broken"]
    assert str(tmp_path) not in failures["broken"]
    good = translators["good"]
    assert not good.loaded and good.card["dataset"] == "spa-eng"
    demo = build_demo(translators)
    view = demo.explorer["translate"]
    assert not good.loaded  # The page is built from the card alone.
    assert "Still warming up" in view.domain("good")
    timings = demo.service.warm_up(["good"], source_lengths=(16,))
    assert good.loaded and set(timings["good"]) == {"load_seconds", "compile_seconds"}
    assert demo.service.warming() == []
    assert "Still warming up" not in view.domain("good")
    # The warm-up compiled what the Translate button runs for a short input
    # (and its output, which this tiny model makes long: the 32 bucket).
    demo.service.warm_up(["good"], source_lengths=(32,), kinds=("deletion",))
    programs = good.compiled_programs
    view.translate("I love you.", "good", "greedy", 4)
    assert good.compiled_programs == programs


def test_the_first_answer_compiles_without_gradio_and_holds_the_models_lock(
    tmp_path,
):
    # `app.py` compiles the default model's Translate button while Gradio
    # is imported: the models need no Gradio, and a request that comes
    # meanwhile waits on the same lock, then compiles nothing.
    script = (
        "import sys, explorer, explorer.models; "
        "assert 'gradio' not in sys.modules, 'gradio imported'"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT)
    assert done.returncode == 0
    from explorer import build_demo

    shutil.copytree(FIXTURE_MODELS / TINY_MODEL, tmp_path / "good")
    translators, _ = models.load_models(tmp_path, lazy=True)
    good = translators["good"]
    demo = build_demo(translators)
    assert demo.service.locks["good"] is good.lock
    load_seconds, compile_seconds = models.warm_first_answer(good)
    assert good.loaded and load_seconds >= 0 and compile_seconds > 0
    programs = good.compiled_programs
    updates = demo.explorer["translate"].translate("I love you.", "good")
    assert updates[demo.explorer["translate"].shared.state] is not None
    assert good.compiled_programs == programs


def test_the_first_answer_serves_short_and_long_outputs_without_compiling(tmp_path):
    # The Translate button scores its own output for the layer predictions;
    # that pass must not depend on how long the output is: the warm-up's
    # output is as long as the search allows, a visitor's rarely is. (A
    # shipped model: the tiny one's outputs are always that long.)
    (tmp_path / "m").symlink_to(REPO_ROOT / "saved_models" / "en-de-multi30k")
    translators, _ = models.load_models(tmp_path, lazy=True)
    model = translators["m"]
    models.warm_first_answer(model)
    programs = model.compiled_programs
    for text in ("A dog runs.", "A man in a blue shirt is riding a bike."):
        translation = models.translate(model, text, layer_predictions=LAYER_PREDICTIONS)
        assert len(translation.target_tokens) < 16
        assert len(translation.layer_predictions[0]) == len(translation.target_tokens)
    assert model.compiled_programs == programs


def test_the_first_answer_compiles_quickly_and_the_warm_up_compiles_it_in_full(
    tmp_path,
):
    # TensorFlow compiles the first answer's two programs (the search and
    # the layer predictions) without XLA, in about half the time; the
    # background warm-up then compiles their XLA programs, which replace
    # them. JAX has one kind of program.
    from explorer import build_demo

    shutil.copytree(FIXTURE_MODELS / TINY_MODEL, tmp_path / "good")
    translators, _ = models.load_models(tmp_path, lazy=True)
    good = translators["good"]
    demo = build_demo(translators)
    two_kinds = keras.backend.backend() == "tensorflow"
    models.warm_first_answer(good)
    assert (good.compiled_programs, good.quick_programs) == (2, 2 if two_kinds else 0)
    demo.service.warm_up(["good"], source_lengths=[16], kinds=["translate"])
    assert (good.compiled_programs, good.quick_programs) == (2, 0)
    demo.explorer["translate"].translate("I love you.", "good")
    assert good.compiled_programs == 2


def test_a_request_before_the_warm_up_loads_its_model(tmp_path):
    from explorer import build_demo

    shutil.copytree(FIXTURE_MODELS / TINY_MODEL, tmp_path / "good")
    translators, _ = models.load_models(tmp_path, lazy=True)
    demo = build_demo(translators)
    _, facts = demo.api["translate"]("I love you.", "good")
    assert translators["good"].loaded and facts["target_tokens"]
    assert demo.service.warming() == ["good"]  # Loaded, not warmed up.


def test_the_warm_up_takes_no_visitors_place_in_the_queue(demo, monkeypatch):
    # A model admits `MAX_WAITING_PER_MODEL` visitor requests; the server's
    # own warm-up goes through the same path but is not one of them.
    service = demo.service
    admitted = []
    translate = models.translate

    def counting(*args, **kwargs):
        admitted.append(service.requests(TINY_MODEL))
        return translate(*args, **kwargs)

    monkeypatch.setattr(models, "translate", counting)
    service.warm_up([TINY_MODEL], source_lengths=[16], kinds=["translate"])
    demo.api["translate"](SENTENCE, TINY_MODEL)
    assert admitted == [0, 1]
    assert service.requests(TINY_MODEL) == 0


def test_a_corrupt_model_folder_is_reported_and_the_others_load(tmp_path):
    shutil.copytree(FIXTURE_MODELS / TINY_MODEL, tmp_path / "good")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a zip file")
    shutil.copy(FIXTURE_MODELS / TINY_MODEL / "spm.model", broken)
    (tmp_path / "notes").mkdir()  # No model.keras: not a model folder.
    translators, failures = models.load_models(tmp_path)
    assert list(translators) == ["good"]
    assert list(failures) == ["broken"]
    # The page says what failed, never the details (paths of the server).
    assert failures["broken"] == "could not be loaded (ValueError; see the server log)"
    assert str(tmp_path) not in failures["broken"]
    assert models.load_models(tmp_path / "missing") == ({}, {})
    cards = models.read_model_cards(tmp_path, ["good", "broken"])
    assert list(cards) == ["good"] and cards["good"].startswith("# tiny")


def test_the_page_names_no_server_path(monkeypatch):
    from explorer import views as views_lib

    monkeypatch.chdir(REPO_ROOT)
    head = views_lib.head_html()
    view = views_lib.browser_view("attention", events=["export"])
    assert "gradio_api/file=explorer/static/explorer.css?v=" in head
    assert "gradio_api/file=explorer/static/explorer.js?v=" in view.js_on_load
    assert str(REPO_ROOT) not in head + view.js_on_load


def test_the_import_map_versions_every_module_the_entry_imports(monkeypatch):
    from explorer import views as views_lib

    monkeypatch.chdir(REPO_ROOT)
    head = views_lib.head_html()
    script = re.search(r"<script>(.*)</script>", head).group(1)
    literal = re.search(r'textContent: ("(?:[^"\\]|\\.)*")', script).group(1)
    imports = json.loads(json.loads(literal))["imports"]
    # Every import of every module names a file the map versions: a new
    # module that the map missed would be cached by its plain URL.
    imported = set()
    for path in views_lib.STATIC.rglob("*.js"):
        for target in re.findall(r'^import .*"(\.[^"]+)";$', path.read_text(), re.M):
            file = (path.parent / target).resolve().relative_to(views_lib.STATIC)
            imported.add(file.as_posix())
    assert "core/store.js" in imported and "views/lines.js" in imported
    prefix = "./gradio_api/file=explorer/static/"
    assert {prefix + name for name in imported} == set(imports)
    for plain, hashed in imports.items():
        digest = hashed.removeprefix(plain + "?v=")
        data = (views_lib.STATIC / plain.removeprefix(prefix)).read_bytes()
        assert digest == hashlib.sha1(data).hexdigest()[:10]


def test_a_demo_without_models_still_builds_and_says_so():
    from explorer import build_demo

    demo = build_demo({}, failures={"broken": "ValueError: <bad> file"})
    markdown = [
        c["props"]["value"]
        for c in demo.get_config_file()["components"]
        if c["props"].get("elem_id") == "model-failures"
    ]
    assert markdown and "&lt;bad&gt;" in markdown[0]
    with pytest.raises(gr.Error, match="Unknown model"):
        demo.api["translate"]("Hello", TINY_MODEL)


def test_choosing_a_model_shows_its_domain_examples_and_card(views):
    view = views["translate"]
    view.model_cards = {TINY_MODEL: "# tiny card"}
    updates = view.choose_model(TINY_MODEL)
    assert "English → Spanish" in updates[view.model_info]
    samples = updates[view.examples]["samples"]
    assert samples and all(len(s) == 1 and s[0] for s in samples)
    assert updates[view.card] == "# tiny card"
    assert view.choose_model("../../etc")[view.card] == "No model card."
    assert view.use_example(["Hola"]) == {view.source: "Hola"}


# ------------------------------------------------------------ translate
def test_translate_button_updates_every_view(views, shared, greedy):
    state = greedy[shared.state]
    assert isinstance(state, ExplorerState)
    assert state.request == Request(SENTENCE, TINY_MODEL, "greedy", 1, 5)
    translation = state.translation
    assert greedy[shared.output] == translation.text
    assert "Translated in" in greedy[shared.info] and "greedy" in greedy[shared.info]
    assert greedy[shared.payload]["serial"] == state.serial
    # Every view that depends on the translation is reset in the same answer.
    for name in ("attention", "whatif", "score", "ablation"):
        assert set(views[name].resets) <= set(greedy)
    ablation = views["ablation"]
    assert greedy[ablation.original] == translation.text
    for kind, box in ablation.heads.items():
        assert greedy[box]["value"] == []
        assert ("L1 H0", f"{kind}:1:0") in greedy[box]["choices"]


def test_payload_matches_the_translation(shared, greedy):
    p = greedy[shared.payload]
    translation = greedy[shared.state].translation
    json.dumps(p, allow_nan=False)  # Strict JSON, as the browser parses it.
    assert p["tokens"] == {
        "source": translation.source_tokens,
        "target": translation.target_tokens,
        "decoder": translation.decoder_input_tokens,
    }
    for kind in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(
            decode(p, kind), translation.attention[kind], atol=0.6 / p["scale"]
        )
        np.testing.assert_allclose(decode(p, kind).sum(-1), 1.0, atol=2e-3)
    np.testing.assert_allclose(p["probs"], translation.token_probs, atol=1e-4)
    assert len(p["alternatives"]) == len(translation.target_tokens)
    for step in p["alternatives"]:
        probs = [prob for _, prob in step]
        assert len(step) == 5 and probs == sorted(probs, reverse=True)
    for name, pieces in p["tokens"].items():
        groups = p["words"][name]["groups"]
        assert sorted(i for g in groups for i in g) == list(range(len(pieces)))
        assert len(p["words"][name]["labels"]) == len(groups)
    assert p["beam"] is None  # Greedy.


def test_greedy_alternatives_start_with_the_chosen_piece(greedy, shared):
    translation = greedy[shared.state].translation
    for step, (piece, prob) in zip(
        translation.alternatives,
        zip(translation.target_tokens, translation.token_probs),
    ):
        assert step[0][0] == piece and math.isclose(step[0][1], prob, rel_tol=1e-4)


def test_attention_travels_as_one_compact_string_per_kind(shared, greedy):
    p = greedy[shared.payload]
    translation = greedy[shared.state].translation
    for kind in ("encoder", "decoder", "cross"):
        text = p["attention"][kind]
        assert isinstance(text, str)
        weights = translation.attention[kind]
        # Two bytes per weight, base64: 4 characters per 3 bytes.
        assert len(text) == 4 * math.ceil(2 * weights.size / 3)
        decoded = payload.decode_attention(p, kind)  # (N, H, rows * cols)
        np.testing.assert_allclose(
            decoded, weights.reshape(decoded.shape), atol=0.5 / payload.SCALE + 1e-7
        )


def test_payload_alignments_for_every_method(shared, greedy):
    p = greedy[shared.payload]
    translation = greedy[shared.state].translation
    aligned = p["alignment"]
    ids = [m["id"] for m in aligned["methods"]]
    N, H = p["shape"]["cross"]
    # The word-deletion methods first, then those that read the attention.
    d, k = len(alignment.DELETION_METHODS), len(alignment.ALIGNMENT_METHODS)
    assert ids[:d] == list(alignment.DELETION_METHODS)
    assert ids[d : d + k] == list(alignment.ALIGNMENT_METHODS)
    assert aligned["default"] == alignment.DEFAULT_METHOD  # Nothing measured.
    assert ids[d + k :] == [f"layer:{n}" for n in range(N)] + [
        f"head:{n}:{h}" for n in range(N) for h in range(H)
    ]
    assert aligned["source_words"] == alignment.source_words(translation)
    for method in aligned["methods"]:
        if alignment.is_deletion(method["id"]):
            # Asked by the view when it shows one (a pass per source word).
            assert method["links"] is None
            continue
        links, _ = alignment.from_pharaoh(method["links"])
        assert links == alignment.word_alignment(translation, method["id"])
        for i, j in links:
            assert 0 <= i < len(aligned["source_words"])
            assert 0 <= j < len(aligned["target_words"])


def test_the_alignment_view_asks_for_the_deletion_links_of_the_shown_translation(
    views, shared, greedy
):
    state = greedy[shared.state]
    translation = state.translation
    html = views["alignment"].html
    answer = views["alignment"].delete(state)[html]
    assert answer["serial"] == state.serial  # The page keeps only its own.
    deletion = shared.service.word_deletion(translation, TINY_MODEL)
    kept = deletion.target_tokens[:-1]  # Then "</s>" (scored if it was cut).
    assert kept == translation.target_tokens[: len(kept)]
    assert deletion.source_words == alignment.source_words(translation)
    assert set(answer["methods"]) == set(alignment.DELETION_METHODS)
    for method, text in answer["methods"].items():
        links, _ = alignment.from_pharaoh(text)
        assert links == alignment.word_alignment(translation, method, deletion)
        assert all(
            0 <= i < len(deletion.source_words) and 0 <= j < len(kept) for i, j in links
        )
    # A new translation clears the answer of the old one.
    assert greedy[html] is None


def test_the_translate_button_runs_no_word_deletion(views, monkeypatch):
    service = views["translate"].shared.service
    calls = []
    monkeypatch.setattr(service, "word_deletion", lambda *a: calls.append(a))
    views["translate"].translate(SENTENCE, TINY_MODEL, "beam", 3)
    assert calls == []


def test_measured_aer_labels_the_menu_and_picks_the_default(shared, greedy):
    translation = greedy[shared.state].translation
    measured = {"average": 60.2, "layer:1": 58.0, "head:0:0": 70.1}
    aligned, _ = payload.alignments(translation, measured)
    by_id = {m["id"]: m for m in aligned["methods"]}
    assert aligned["default"] == "layer:1" and aligned["measured"]
    assert by_id["average"]["label"] == "average · AER 60.2"
    assert by_id["shift-att"]["aer"] is None
    measured["deletion+diag+inter"] = 35.0
    aligned, _ = payload.alignments(translation, measured)
    assert aligned["default"] == "deletion+diag+inter"
    by_id = {m["id"]: m for m in aligned["methods"]}
    assert by_id["deletion+diag+inter"]["label"] == "deletion+diag+inter · AER 35.0"


def test_head_statistics_include_sinks_and_alignment_agreement(shared, greedy):
    p = greedy[shared.payload]
    translation = greedy[shared.state].translation
    rows = p["stats"]
    N, H = p["shape"]["cross"]
    assert len(rows) == sum(n * h for n, h in p["shape"].values())
    by_key = {(r["kind"], r["layer"], r["head"]): r for r in rows}
    # Decoder self-attention: the weight on <s> (its first key) is a sink.
    decoder = translation.attention["decoder"]
    for layer in range(N):
        for head in range(H):
            row = by_key[("decoder", layer, head)]
            expected = decoder[layer, head][:, 0].mean()
            assert row["to_special"] == pytest.approx(expected, abs=2e-3)
            assert 0 <= row["to_punctuation"] <= 1
    # "?" is the source's only punctuation piece.
    question = translation.source_tokens.index("?")
    cross = translation.attention["cross"]
    row = by_key[("cross", 0, 1)]
    assert row["to_punctuation"] == pytest.approx(
        cross[0, 1][:, question].mean(), abs=2e-3
    )
    reference = alignment.word_alignment(translation, alignment.ATTENTION_METHOD)
    found = alignment.word_alignment(translation, "head:1:0")
    f1 = 2 * len(found & reference) / (len(found) + len(reference))
    assert by_key[("cross", 1, 0)]["alignment_agreement"] == pytest.approx(f1, abs=1e-3)
    assert by_key[("encoder", 0, 0)]["alignment_agreement"] is None


def test_beam_payload_records_the_search_tree(shared, beam):
    state = beam[shared.state]
    p = beam[shared.payload]
    assert len(state.hypotheses) == 3
    tree = p["beam"]
    assert tree["shown"] == 0
    assert [h["text"] for h in tree["hypotheses"]] == [h.text for h in state.hypotheses]
    steps = tree["steps"]
    assert all(1 <= len(step) <= 3 for step in steps)
    # Following the best hypothesis' nodes from the start spells its pieces.
    pieces, slot = [], None
    for t, step in enumerate(steps):
        mine = [k for k, node in enumerate(step) if node[4] == 0]
        assert len(mine) == 1, f"step {t}: {step}"
        parent, piece = step[mine[0]][:2]
        assert t == 0 or parent == slot
        slot = mine[0]
        if piece != "<pad>":
            pieces.append(piece)
    assert pieces == state.result.target_tokens
    assert "beam search (beam 3)" in beam[shared.info]


def test_picking_a_beam_hypothesis_shows_it_everywhere(views, shared, beam):
    state = beam[shared.state]
    updates = views["beam"].pick(state, event(index=2))
    picked = updates[shared.state]
    assert picked.shown == 2 and picked.serial != state.serial
    assert updates[shared.output] == state.result.n_best[1].text
    p = updates[shared.payload]
    assert p["tokens"]["target"] == state.result.n_best[1].target_tokens
    assert p["beam"]["shown"] == 2
    assert "hypothesis 3 of 3" in updates[shared.info]
    # Views showing results of the old hypothesis are reset, as by Translate.
    for name in ("whatif", "score", "ablation", "attribution"):
        for component in views[name].resets:
            assert component in updates, name
    for bad in (3, -1, "x", None):
        with pytest.raises(gr.Error, match="No such hypothesis"):
            views["beam"].pick(state, event(index=bad))
    with pytest.raises(gr.Error, match="Translate something first"):
        views["beam"].pick(None, event(index=0))


# ------------------------------------------------------------ what if
def test_a_candidate_is_forced_and_the_model_continues(views, shared, greedy):
    state = greedy[shared.state]
    translation = state.translation
    view = views["whatif"]
    step = 2
    piece = translation.alternatives[step][1][0]  # The runner-up.
    updates = view.from_candidate(state, event(step=step, piece=piece))
    value = updates[view.html]
    assert value["original"]["pieces"] == translation.target_tokens
    forced = value["forced"]
    assert forced["pieces"][: step + 1] == [*translation.target_tokens[:step], piece]
    assert forced["prefix_length"] == step + 1
    assert forced["log_prob"] == pytest.approx(
        float(np.sum(np.log(forced["probs"]))), abs=0.01
    )
    assert value["original"]["log_prob"] == pytest.approx(
        payload.log_prob(translation), abs=1e-3
    )
    json.dumps(value, allow_nan=False)


def test_forcing_the_end_piece_ends_the_translation_there(views, shared, greedy):
    state = greedy[shared.state]
    value = views["whatif"].from_candidate(state, event(step=1, piece=EOS))
    forced = value[views["whatif"].html]["forced"]
    assert forced["pieces"] == [state.translation.target_tokens[0], EOS]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"step": 99, "piece": "▁a"}, "does not exist"),
        ({"step": -1, "piece": "▁a"}, "does not exist"),
        ({"step": "two", "piece": "▁a"}, "Unknown step"),
        ({"piece": "▁a"}, "Unknown step"),
        ({"step": 1, "piece": ""}, "No candidate"),
        ({"step": 1, "piece": "<s>"}, "control piece"),
        ({"step": 1, "piece": "no such piece ✗"}, "unknown piece"),
    ],
)
def test_bad_candidates_give_a_message(views, shared, greedy, data, message):
    with pytest.raises(gr.Error, match=message):
        views["whatif"].from_candidate(greedy[shared.state], event(**data))


def test_a_typed_prefix_is_forced(demo, views, shared, greedy):
    view = views["whatif"]
    state = greedy[shared.state]
    updates = view.from_prefix(state, "la estación")
    forced = updates[view.html]["forced"]
    tokenizer = demo.service.translators[TINY_MODEL].tokenizer
    expected = tokenizer.encode("la estación", out_type=str)
    assert forced["pieces"][: len(expected)] == expected
    assert forced["prefix_length"] == len(expected)
    with pytest.raises(gr.Error, match="Type the start"):
        view.from_prefix(state, "   ")
    with pytest.raises(gr.Error, match="pieces; at most"):
        view.from_prefix(state, "palabra " * 200)
    with pytest.raises(gr.Error, match="Translate something first"):
        view.from_prefix(None, "la")


# ------------------------------------------------------------ score
def test_scoring_a_typed_translation(views, shared, greedy):
    state = greedy[shared.state]
    view = views["score"]
    value = view.score(state, "¿Dónde está la estación de tren?")[view.html]
    json.dumps(value, allow_nan=False)
    target = value["tokens"]["target"]
    assert target[-1] == EOS and len(value["probs"]) == len(target)
    assert value["log_prob"] == pytest.approx(
        float(np.sum(np.log(value["probs"]))), rel=0.01
    )
    for piece, preferred, step in zip(
        target, value["preferred"], value["alternatives"]
    ):
        if step[0][0] == piece:
            assert preferred is None
        else:
            assert preferred == step[0]
    N, H = value["shape"]["cross"]
    assert np.shape(payload.decode_attention(value, "cross")) == (
        N,
        H,
        len(target) * len(value["tokens"]["source"]),
    )
    assert value["model_translation"] == state.translation.text


def test_scoring_bad_input_gives_a_message(views, shared, greedy):
    view = views["score"]
    with pytest.raises(gr.Error, match="Type your translation"):
        view.score(greedy[shared.state], "  ")
    with pytest.raises(gr.Error, match="Translate something first"):
        view.score(None, "hola")
    # Anything typed is text, so it scores (unknown characters become <unk>).
    value = view.score(greedy[shared.state], "<b>東京 🚄</b>\x00")[view.html]
    assert value["tokens"]["target"][-1] == EOS


# ------------------------------------------------------------ downloads
@pytest.mark.parametrize("fmt", exports.FORMATS)
def test_downloads_are_made_on_demand_in_a_temp_dir(views, shared, greedy, fmt):
    view = views["attention"]
    state = greedy[shared.state]
    request = dict(format=fmt, kind="decoder", layer=1, head=0, merge=True)
    path = pathlib.Path(view.export(state, event(**request))[view.file]["value"])
    temp = pathlib.Path(tempfile.gettempdir()).resolve()
    assert temp in path.resolve().parents
    assert REPO_ROOT not in path.resolve().parents
    translation = state.translation
    if fmt == "npz":
        with np.load(path) as arrays:
            np.testing.assert_allclose(
                arrays["cross_attention"], translation.attention["cross"]
            )
            assert list(arrays["source_tokens"]) == translation.source_tokens
    elif fmt == "json":
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["target_tokens"] == translation.target_tokens
        assert np.shape(data["attention"]["decoder"]) == (
            translation.attention["decoder"].shape
        )
    elif fmt == "png":
        assert path.name == "decoder_layer1_head0.png"
        assert path.read_bytes().startswith(b"\x89PNG")
    else:
        text = path.read_text(encoding="utf-8")
        assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_translating_writes_no_file(views):
    root = exports.export_root()
    before = set(root.iterdir())
    views["translate"].translate("Good morning.", TINY_MODEL, "greedy", 4)
    assert set(root.iterdir()) == before


def test_bad_download_requests_give_a_message(views, shared, greedy):
    view = views["attention"]
    state = greedy[shared.state]
    for request, message in [
        ({"format": "exe"}, "Unknown format"),
        ({"format": "png", "kind": "sideways"}, "Unknown kind"),
        ({"format": "svg", "layer": 7}, "does not exist"),
        ({"format": "png", "head": "one"}, "invalid literal"),
    ]:
        with pytest.raises(gr.Error, match=message):
            view.export(state, event(**request))
    with pytest.raises(gr.Error, match="Translate something first"):
        view.export(None, event(format="npz"))


def test_old_exports_are_pruned():
    old = exports.new_folder()
    (old / "attention.npz").write_bytes(b"x")
    os.utime(old, (0, 0))  # 1970.
    new = exports.new_folder()
    assert not old.exists() and new.is_dir() and new.parent == exports.export_root()


# ------------------------------------------------------------ ablation
def test_head_ablation(views, shared, greedy):
    view = views["ablation"]
    state = greedy[shared.state]
    updates = view.run(state, ["encoder:0:1"], [], ["cross:0:0", "cross:1:1"])
    assert isinstance(updates[view.ablated], str)
    assert "3 head(s) switched off" in updates[view.info]
    # Switching nothing off reproduces the original.
    assert view.run(state, [], [], [])[view.ablated] == greedy[shared.output]
    with pytest.raises(gr.Error, match="Translate something first"):
        view.run(None, [], [], [])


def test_confidence_html_escapes_tokens():
    from explorer.views.ablation import confidence_html

    translation = types.SimpleNamespace(
        target_tokens=["<script>alert(1)</script>", "</s>"], token_probs=[0.9, 0.5]
    )
    out = confidence_html(translation)
    assert "<script>" not in out
    assert html.escape("<script>alert(1)</script>") in out


# ------------------------------------------------------------ permalinks
def link(**params):
    return types.SimpleNamespace(query_params=params)


def test_a_permalink_opens_the_page_with_its_translation(views, shared):
    view = views["translate"]
    updates = view.open_link(
        link(model=TINY_MODEL, text=SENTENCE, decoding="beam", beam="3")
    )
    assert updates[view.source] == SENTENCE
    assert updates[view.model] == TINY_MODEL and updates[view.decoding] == "beam"
    state = updates[shared.state]
    assert state.request.beam_size == 3 and state.request.text == SENTENCE
    # The link's beam size reaches the control.
    assert updates[view.beam_size]["value"] == 3
    assert updates[shared.output] == state.translation.text
    assert updates[shared.payload]["beam"] is not None


def test_a_page_without_a_link_translates_nothing(views, shared):
    view = views["translate"]
    updates = view.open_link(link())
    assert shared.state not in updates and shared.payload not in updates
    assert view.model not in updates
    # A model alone is chosen, with its domain, and nothing is translated.
    updates = view.open_link(link(model=TINY_MODEL))
    assert updates[view.model] == TINY_MODEL and view.model_info in updates
    assert shared.state not in updates


def test_a_broken_permalink_warns_and_serves_the_page(views, shared):
    view = views["translate"]
    with pytest.warns(UserWarning, match="Unknown model"):
        updates = view.open_link(link(model="xx-yy", text="Hello"))
    assert updates[view.source] == "Hello" and view.model not in updates
    with pytest.warns(UserWarning, match="beam_size"):
        view.open_link(link(model=TINY_MODEL, text="Hi", decoding="beam", beam="99"))


# ------------------------------------------------------------ bad input
def test_empty_input_gives_a_message(views, shared, demo):
    with pytest.warns(UserWarning, match="Type a sentence"):  # gr.Warning's toast.
        updates = views["translate"].translate("   ", TINY_MODEL, "greedy", 4)
    assert updates[shared.output] == "" and updates[shared.state] is None
    assert updates[shared.payload] is None and "Type a sentence" in updates[shared.info]
    text, facts = demo.api["translate"]("", TINY_MODEL)
    assert text == "" and "Type a sentence" in facts["message"]


def test_long_input_is_translated_with_a_notice(views, shared, demo):
    text, facts = demo.api["translate"]("The cat sleeps. " * 320, TINY_MODEL)
    assert facts["truncated"] is True and "too long" in facts["message"]
    with pytest.warns(UserWarning, match="too long"):
        updates = views["translate"].translate(
            "word " * (MAX_INPUT_CHARS // 4), TINY_MODEL, "greedy", 4
        )
    assert "too long" in updates[shared.info]


@pytest.mark.parametrize(
    "text",
    [
        "I ❤️ Tokyo 東京 🚄!",
        "مرحبا بالعالم",
        "<script>alert('x')</script> <b>bold</b>",
        "tab\there\x00null\x07bell\x1b[31mred",
    ],
)
def test_unusual_input_translates(demo, text):
    translation, facts = demo.api["translate"](text, TINY_MODEL)
    assert isinstance(translation, str)
    assert facts["source_tokens"] and not facts["message"]


@pytest.mark.parametrize("text", ["I ❤️ Tokyo 東京 🚄!", "\x00\x07 \x1b", "?"])
def test_the_translate_button_aligns_unusual_input_or_says_why_not(views, shared, text):
    updates = views["translate"].translate(text, TINY_MODEL, "greedy", 4)
    state = updates[shared.state]
    if state is None:  # Nothing left to translate.
        assert updates[shared.info]
        return
    words = alignment.source_words(state.translation)
    ids = [m["id"] for m in updates[shared.payload]["alignment"]["methods"]]
    assert (alignment.DEFAULT_METHOD in ids) == bool(words)
    # Without source words the view's deletion request links nothing.
    answer = views["alignment"].delete(state)[views["alignment"].html]
    assert all(bool(text) == bool(words) for text in answer["methods"].values()), answer


def test_unexpected_errors_become_a_short_message():
    from explorer.service import friendly_errors

    @friendly_errors
    def broken():
        raise RuntimeError("/secret/path/in/a/traceback")

    with pytest.raises(gr.Error) as info:
        broken()
    assert "secret" not in str(info.value) and "RuntimeError" in str(info.value)


# ------------------------------------------------------------ API
def test_api_translate_reports_alternatives_and_a_prefix(demo):
    text, facts = demo.api["translate"](SENTENCE, TINY_MODEL, "greedy", 4, 3, "la")
    assert facts["prefix_length"] >= 1
    assert len(facts["alternatives"]) == len(facts["target_tokens"])
    assert all(len(step) == 3 for step in facts["alternatives"])
    assert "".join(facts["target_tokens"]).replace("▁", " ").strip().startswith("la")
    _, facts = demo.api["translate"](SENTENCE, TINY_MODEL, "beam", 3, 0)
    assert facts["decoding"] == "beam search, beam 3"
    assert facts["alternatives"] == [] and facts["prefix_length"] == 0
    assert len(facts["token_probs"]) == len(facts["target_tokens"])


@pytest.mark.parametrize(
    "args, message",
    [
        ((SENTENCE, "xx-yy"), "Unknown model"),
        ((SENTENCE, TINY_MODEL, "sampling"), "Unknown decoding"),
        ((SENTENCE, TINY_MODEL, "beam", 99), "beam_size"),
        ((SENTENCE, TINY_MODEL, "greedy", 4, 11), "top_k"),
        ((SENTENCE, TINY_MODEL, "greedy", 4, "many"), "top_k"),
        ((SENTENCE, TINY_MODEL, "greedy", 4, 5, "word " * 200), "pieces; at most"),
    ],
)
def test_api_translate_bad_arguments(demo, args, message):
    with pytest.raises(gr.Error, match=message):
        demo.api["translate"](*args)


def test_api_score(demo):
    out = demo.api["score"](SENTENCE, "¿Dónde está la estación?", TINY_MODEL)
    json.dumps(out, allow_nan=False)
    assert out["target_tokens"][-1] == EOS
    assert len(out["token_probs"]) == len(out["target_tokens"])
    assert len(out["alternatives"]) == len(out["target_tokens"])
    assert out["score"] == pytest.approx(np.sum(np.log(out["token_probs"])), rel=0.01)
    with pytest.raises(gr.Error, match="Type your translation"):
        demo.api["score"](SENTENCE, "", TINY_MODEL)
    with pytest.raises(gr.Error, match="Type a sentence"):
        demo.api["score"]("", "hola", TINY_MODEL)


def test_api_align(demo):
    target = "¿Dónde está la estación?"
    out = demo.api["align"](SENTENCE, target, TINY_MODEL, "average")
    assert out["source_words"] == ["Where", "is", "the", "train", "station?"]
    assert out["target_words"] == ["¿Dónde", "está", "la", "estación?"]
    links, _ = alignment.from_pharaoh(out["links"])
    assert sorted(j for _, j in links) == [0, 1, 2, 3]  # One per target word.
    assert all(0 <= i < 5 for i, _ in links)
    # "+union" adds each source word's most attending target word; the
    # default ("+inter") keeps the links both ways agree on, so at most one
    # per word on either side.
    union = demo.api["align"](SENTENCE, target, TINY_MODEL, "average+union")
    union, _ = alignment.from_pharaoh(union["links"])
    assert union >= links and {i for i, _ in union} == set(range(5))
    default = demo.api["align"](SENTENCE, target, TINY_MODEL)
    assert default["method"] == alignment.DEFAULT_METHOD == "deletion+diag+inter"
    translation, _ = demo.service.score(SENTENCE, target, TINY_MODEL)
    deletion = demo.service.word_deletion(translation, TINY_MODEL)
    expected = alignment.word_alignment(translation, "deletion+diag+inter", deletion)
    assert alignment.from_pharaoh(default["links"])[0] == expected
    default = demo.api["align"](SENTENCE, target, TINY_MODEL, "average+diag+inter")
    inter, _ = alignment.from_pharaoh(default["links"])
    assert inter and len({i for i, _ in inter}) == len({j for _, j in inter}) == len(
        inter
    )
    # An empty target aligns the model's own translation.
    own = demo.api["align"](SENTENCE, "", TINY_MODEL, "head:1:1")
    assert own["target"] == demo.api["translate"](SENTENCE, TINY_MODEL)[0]
    assert own["method"] == "head:1:1"
    for method, message in [
        ("sideways", "invalid value"),
        ("head:9:0", "layer 9"),
        ("deletion+sideways", "links rule"),
    ]:
        with pytest.raises(gr.Error, match=message):
            demo.api["align"](SENTENCE, "", TINY_MODEL, method)
    with pytest.raises(gr.Error, match="Type a sentence"):
        demo.api["align"](" ", "hola", TINY_MODEL)


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_api_attention(demo, kind):
    out = demo.api["attention"](SENTENCE, TINY_MODEL, kind, 1, 0)
    matrix = np.array(out["attention"])
    assert matrix.shape == (len(out["row_tokens"]), len(out["column_tokens"]))
    np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-3)
    if kind == "decoder":
        assert out["column_tokens"][0] == "<s>"
        assert np.allclose(np.triu(matrix, 1), 0.0)  # Causal.
    json.dumps(out)


def test_api_attention_bad_arguments(demo):
    with pytest.raises(gr.Error, match="Unknown kind"):
        demo.api["attention"](SENTENCE, TINY_MODEL, "self", 0, 0)
    with pytest.raises(gr.Error, match="does not exist"):
        demo.api["attention"](SENTENCE, TINY_MODEL, "cross", 5, 0)


# ------------------------------------------------------------ bounded work
def test_no_request_makes_the_server_compile_without_bound(demo):
    service = demo.service
    translator = service.translators[TINY_MODEL]
    before = translator.compiled_programs
    for top_k in range(0, 11):
        _, facts = demo.api["translate"](SENTENCE, TINY_MODEL, "greedy", 4, top_k)
        assert all(len(step) == top_k for step in facts["alternatives"])
    after_greedy = translator.compiled_programs
    for beam in (2, 3, 4, 6, 8):
        for top_k in (0, 7, 10):
            demo.api["translate"](SENTENCE, TINY_MODEL, "beam", beam, top_k)
    # top_k is cut on the host: one program per search and source length.
    assert service.compiled_programs()[TINY_MODEL] == translator.compiled_programs
    # One greedy search for this length, and its layer predictions' pass.
    assert after_greedy <= before + 2
    # One beam program for every beam size (the layer predictions' pass may
    # meet another target length).
    assert translator.compiled_programs <= after_greedy + 1 + 2
    assert translator.compiled_programs <= models.MAX_PROGRAMS
    assert translator.max_programs == models.MAX_PROGRAMS
    with pytest.raises(gr.Error, match="must be one of 2, 3, 4, 6, 8"):
        demo.api["translate"](SENTENCE, TINY_MODEL, "beam", 5)


def test_after_the_warm_up_no_request_compiles():
    # The warm-up compiles every program a request can need: afterwards any
    # mix of requests, of any length and option, compiles nothing.
    demo, translators = tiny_demo()
    service, translator = demo.service, translators[TINY_MODEL]
    service.warm_up()
    warmed = translator.compiled_programs
    assert 0 < warmed <= models.MAX_PROGRAMS
    rng = random.Random(0)
    words = "the old man gave his granddaughter a red bicycle for her birthday"
    words, spanish = words.split(), "el viejo le dio a su nieta una bici roja".split()
    for _ in range(25):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        own = service.translate(
            text,
            TINY_MODEL,
            top_k=rng.randint(0, 10),
            prefix=rng.choice([None, "El"]),
            layer_predictions=models.LAYER_PREDICTIONS,  # As the Translate button.
        ).translation
        service.translate(text, TINY_MODEL, "beam", rng.choice(models.BEAM_SIZES))
        target = " ".join(rng.choice(spanish) for _ in range(rng.randint(1, 4)))
        service.score(text, target, TINY_MODEL, top_k=rng.randint(0, 10))
        method = rng.choice(("grad_x_input", "integrated_gradients"))
        service.attribute(text, rng.choice(["", target]), TINY_MODEL, method, 4)
        kind = rng.choice(("encoder", "decoder", "cross"))
        service.head(text, own.target_tokens, TINY_MODEL, kind, 0, 0, 0)
        service.word_deletion(own, TINY_MODEL)
    service.head_importance(text, own.target_tokens, TINY_MODEL)
    assert translator.compiled_programs == warmed
    assert translator.programs_dropped == 0


def test_a_translator_drops_its_programs_at_the_cap():
    translator = Translator.load(FIXTURE_MODELS / TINY_MODEL, max_programs=2)
    for options in ({}, {"return_attention": True}, {"top_k": 3}):  # 3 searches.
        translator.translate("Hi!", **options)
    assert translator.compiled_programs == 1 and translator.programs_dropped == 2
    assert translator.translate("Hi!").text  # Still translates.


def test_a_long_prefix_is_cut_before_it_is_tokenized(demo, monkeypatch):
    seen = []
    translator = demo.service.translators[TINY_MODEL]
    encode = translator.target_ids

    def spy(target, argument="target"):
        seen.append(len(target))
        return encode(target, argument)

    monkeypatch.setattr(translator, "target_ids", spy)
    with pytest.raises(gr.Error, match="pieces; at most"):
        demo.api["translate"](SENTENCE, TINY_MODEL, "greedy", 4, 5, "word " * 10**5)
    assert seen == [MAX_INPUT_CHARS]


# ------------------------------------------------------------ attribution
def test_api_attribute_explains_each_piece(demo):
    out = demo.api["attribute"](SENTENCE, "¿Dónde está la estación?", TINY_MODEL)
    json.dumps(out, allow_nan=False)
    T, S = len(out["target_tokens"]), len(out["source_tokens"])
    assert np.shape(out["source"]) == (T, S) and np.shape(out["prefix"]) == (T, T)
    # Shares of each row's absolute total.
    totals = np.sum(out["source"], -1) + np.sum(out["prefix"], -1)
    np.testing.assert_allclose(totals, 1.0, atol=1e-3)
    np.testing.assert_allclose(
        np.sum(out["source"], -1), out["source_share"], atol=1e-3
    )
    assert len(out["completeness_error"]) == T
    fast = demo.api["attribute"](SENTENCE, "", TINY_MODEL, "grad_x_input")
    assert fast["completeness_error"] is None and fast["method"] == "grad_x_input"
    for args, message in [
        ((SENTENCE, "", TINY_MODEL, "saliency"), "Unknown attribution method"),
        ((SENTENCE, "", TINY_MODEL, "integrated_gradients", 0), "steps"),
        (("  ", "", TINY_MODEL), "Type a sentence"),
    ]:
        with pytest.raises(gr.Error, match=message):
            demo.api["attribute"](*args)


def test_the_attribution_view_explains_the_shown_translation(views, shared, beam):
    view = views["attribution"]
    state = beam[shared.state].show(1)
    value = view.attribute(state, "grad_x_input")[view.html]
    assert value["serial"] == state.serial
    assert value["tokens"]["target"] == state.translation.target_tokens
    with pytest.raises(gr.Error, match="Translate something first"):
        view.attribute(None, "grad_x_input")


def test_head_statistics_measure_each_heads_importance_on_request(
    views, shared, greedy
):
    from keras_mha.head_importance import head_importance

    view = views["heads"]
    state = greedy[shared.state]
    translator = shared.service.translators[TINY_MODEL]
    assert greedy[view.html] is None  # A new translation clears the column.
    value = view.importance(state)[view.html]
    assert value["serial"] == state.serial
    model = translator.model
    heads = model.num_heads * (model.num_encoder_layers + 2 * model.num_decoder_layers)
    assert len(value["heads"]) == heads
    pieces = [p for p in state.translation.target_tokens if p != EOS]
    expected = head_importance(translator, SENTENCE, pieces[: model.max_length - 1])
    for entry in value["heads"]:
        want = expected[entry["kind"]][entry["layer"], entry["head"]]
        assert entry["drop"] == pytest.approx(want, abs=1e-3)
    with pytest.raises(gr.Error, match="Translate something first"):
        view.importance(None)


def test_step_by_step_payload_has_each_layers_prediction(greedy, shared):
    p = greedy[shared.payload]
    translation = greedy[shared.state].translation
    assert len(p["layer_predictions"]) == 2  # The tiny model's decoder layers.
    last = p["layer_predictions"][-1]
    assert [step[0][0] for step in last] == translation.target_tokens


def test_only_the_librarys_own_refusals_reach_a_visitor(demo, monkeypatch, caplog):
    translator = demo.service.translators[TINY_MODEL]

    def internal(*args, **kwargs):
        raise ValueError("operands could not be broadcast at /srv/app/x.py")

    monkeypatch.setattr(translator, "translate", internal)
    with pytest.raises(gr.Error) as raised:
        demo.api["translate"](SENTENCE, TINY_MODEL)
    assert (
        "broadcast" not in raised.value.message and "/srv" not in raised.value.message
    )
    assert "Sorry, that did not work (ValueError)" in raised.value.message
    assert "operands could not be broadcast" in caplog.text  # Logged instead.
    monkeypatch.undo()
    with pytest.raises(gr.Error, match="pieces; at most"):  # The library's own.
        demo.api["translate"](SENTENCE, TINY_MODEL, "greedy", 4, 5, "word " * 200)


def test_session_state_is_bounded_in_time_and_number(shared):
    import explorer

    assert shared.state.time_to_live == explorer.STATE_TIME_TO_LIVE <= 3600
    assert explorer.LAUNCH_OPTIONS["state_session_capacity"] <= 1000
    app = (REPO_ROOT / "app.py").read_text()
    assert "**LAUNCH_OPTIONS" in app


# ------------------------------------------------------------ one head
@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_api_head_gives_the_stages_and_the_attention_row(demo, kind):
    out = demo.api["head"](SENTENCE, "", TINY_MODEL, kind, 1, 1, 2)
    json.dumps(out, allow_nan=False)
    attention = demo.api["attention"](SENTENCE, TINY_MODEL, kind, 1, 1)
    np.testing.assert_allclose(out["weights"], attention["attention"][2], atol=1e-4)
    assert out["key_tokens"] == attention["column_tokens"]
    labels = {s["key"]: s for s in out["stages"]}
    # Shapes in the model's real sizes: d_k = D / H of the tiny model.
    assert out["d_k"] == 16 and labels["q"]["shape"] == "(16,)"
    assert labels["keys"]["shape"] == f"({len(out['key_tokens'])}, 16)"
    assert labels["weights"]["formula"].startswith("w_j = exp(s_j)")
    np.testing.assert_allclose(
        out["scaled"], np.array(out["dots"]) / np.sqrt(out["d_k"]), atol=1e-4
    )
    assert sum(out["weights"]) == pytest.approx(1.0, abs=1e-3)
    # Every number is sent as rounded (the position vectors to 3 decimals,
    # the rest to 5), not as the long decimal of a float32.
    digits = {"positions": 3}
    for key in ("positions", "x", "q", "keys", "weights", "token_vector"):
        numbers = re.findall(r"-?\d+\.(\d+)", json.dumps(out[key]))
        assert numbers and max(map(len, numbers)) <= digits.get(key, 5), key


def test_another_head_query_or_layer_of_a_kind_needs_no_second_pass(
    shared, monkeypatch
):
    service = shared.service
    translator = service.translator(TINY_MODEL)
    passes = []
    trace_layers = translator.trace_layers

    def counted(source_ids, decoder_ids, kind):
        passes.append(kind)
        return trace_layers(source_ids, decoder_ids, kind)

    monkeypatch.setattr(translator, "trace_layers", counted)
    target = "una frase que ninguna otra prueba usa"
    scored, _ = service.score(SENTENCE, target, TINY_MODEL)
    rows = {}
    for head, query in ((0, 0), (1, 2), (0, 3)):
        stages = service.head(SENTENCE, target, TINY_MODEL, "cross", 1, head, query)[0]
        rows[head, query] = stages["weights"]
    assert passes == ["cross"]  # One pass for the kind.
    S = len(scored.source_tokens)
    for (head, query), weights in rows.items():
        np.testing.assert_allclose(
            weights, scored.attention["cross"][1, head, query, :S], atol=1e-5
        )
    # Another layer of the kind: no second pass either.
    other = service.head(SENTENCE, target, TINY_MODEL, "cross", 0, 1, 2)[0]
    np.testing.assert_allclose(
        other["weights"], scored.attention["cross"][0, 1, 2, :S], atol=1e-5
    )
    service.head(SENTENCE, target, TINY_MODEL, "encoder", 0, 0, 0)
    assert passes == ["cross", "encoder"]
    # A layer or kind the model lacks is refused before any pass.
    for kind, layer, message in (("decoder", 9, "layer=9"), ("self", 0, "kind")):
        with pytest.raises(gr.Error, match=message):
            service.head(SENTENCE, target, TINY_MODEL, kind, layer, 0, 0)
    assert passes == ["cross", "encoder"]


def test_the_head_view_answers_the_renderers_request(views, shared, greedy):
    view = views["head"]
    state = greedy[shared.state]
    value = view.trace(state, event(kind="encoder", layer=0, head=1, query=1))[
        view.html
    ]
    assert value["serial"] == state.serial and value["kind"] == "encoder"
    assert value["query_token"] == state.translation.source_tokens[1]
    assert len(json.dumps(value)) < 200_000  # One head's payload.
    with pytest.raises(gr.Error, match="head=7"):
        view.trace(state, event(kind="cross", layer=0, head=7, query=0))
    with pytest.raises(gr.Error, match="Translate something first"):
        view.trace(None, event(kind="cross"))
