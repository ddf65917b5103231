"""Evaluation: multi-reference sacreBLEU, tokenized lowercased BLEU, cards."""

import json
import pathlib
import shutil

import sacrebleu

from training import evaluate as evaluate_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TINY = FIXTURES / "models" / "en-es-tiny"


def test_multi_reference_streams_pad_with_none():
    streams = evaluate_lib.reference_streams([["a", "b"], ["c"]])
    assert streams == [["a", "c"], ["b", None]]


def test_every_reference_counts():
    hyps = ["the cat sat on the mat", "hello there my friend"]
    refs = [["a cat sat on a mat", "the cat sat on the mat"], ["hello there my friend"]]
    multi = evaluate_lib.score(hyps, refs, "en")["bleu"]
    single = evaluate_lib.score(hyps, [[r[0]] for r in refs], "en")["bleu"]
    assert multi == 100.0 and single < 100.0


def test_tokenized_lowercased_bleu_ignores_case_and_punctuation_spacing():
    hyps = ["Ein Mann fährt Fahrrad."]
    refs = [["ein Mann fährt Fahrrad ."]]
    result = evaluate_lib.score(hyps, refs, "de", tokenized_lowercase=True)
    assert result["bleu_tok_lc"] == 100.0
    assert result["bleu"] == sacrebleu.corpus_bleu(
        hyps, [["ein Mann fährt Fahrrad ."]]
    ).score.__round__(2)


def test_evaluate_cli_updates_metrics_and_card(tmp_path, capsys):
    model = tmp_path / "en-es-tiny"
    shutil.copytree(TINY, model)
    evaluate_lib.main(
        [str(model), "--split", "test", "--data-dir", str(FIXTURES), "--update-card"]
    )
    printed = capsys.readouterr().out
    assert "BLEU" in printed and "nrefs:var" in printed
    metrics = json.loads((model / "metrics.json").read_text())
    result = metrics["evaluation"]["test_beam1"]
    assert result["sources"] < result["references"]  # multi-reference split
    assert "| test | greedy |" in (model / "model_card.md").read_text()


def test_a_repeated_trigram_is_found_whatever_the_case():
    assert evaluate_lib.repeats_trigram("a su nieto a su nieto de rojo")
    assert evaluate_lib.repeats_trigram("A su nieto, a su nieto") is False
    assert (
        evaluate_lib.repeats_trigram("El anciano le dio a su nieta una bici") is False
    )
    assert evaluate_lib.repeats_trigram("Yo sé. yo sé. Yo sé.")


def test_sources_fall_in_one_length_bucket_each():
    assert evaluate_lib.length_bucket("one two three four five six") == "≤ 6"
    assert evaluate_lib.length_bucket("1 2 3 4 5 6 7") == "7–10"
    assert evaluate_lib.length_bucket(" ".join("w" * 10)) == "7–10"
    assert evaluate_lib.length_bucket(" ".join("w" * 11)) == "≥ 11"


def test_scores_by_length_score_each_bucket_alone():
    sources = ["short one", "a b c d e f g h i j k l"]
    hypotheses = ["the cat sat on the mat", "completely wrong words here now"]
    references = [["the cat sat on the mat"], ["a dog lay under a rug today"]]
    by_length = evaluate_lib.scores_by_length(sources, hypotheses, references, "en")
    assert list(by_length) == ["≤ 6", "≥ 11"]
    assert by_length["≤ 6"]["bleu"] == 100.0 and by_length["≤ 6"]["sources"] == 1
    assert by_length["≥ 11"]["bleu"] == 0.0


def test_every_test_set_of_the_pair_is_evaluated():
    assert evaluate_lib.evaluation_datasets("deu-eng") == ["deu-eng", "multi30k-en-de"]
    assert evaluate_lib.evaluation_datasets("multi30k-en-fr") == [
        "multi30k-en-fr",
        "fra-eng",
    ]
    assert evaluate_lib.evaluation_datasets("spa-eng") == ["spa-eng"]


def test_evaluate_cli_reports_lengths_and_repeats(tmp_path, capsys):
    model = tmp_path / "en-es-tiny"
    shutil.copytree(TINY, model)
    evaluate_lib.main(
        [str(model), "--split", "test", "--data-dir", str(FIXTURES), "--update-card"]
    )
    printed = capsys.readouterr().out
    assert "| source words | sources | BLEU | chrF |" in printed
    assert "repeated trigram" in printed
    result = json.loads((model / "metrics.json").read_text())["evaluation"][
        "test_beam1"
    ]
    assert result["dataset"] == "spa-eng"
    assert sum(b["sources"] for b in result["by_length"].values()) == result["sources"]
    assert 0 <= result["repeated_trigram_percent"] <= 100
    assert "by source length in words" in (model / "model_card.md").read_text()
