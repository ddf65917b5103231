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
