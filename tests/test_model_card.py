"""Model cards: Hugging Face Hub front matter, sections, portable metrics."""

import copy
import json
import pathlib
import re
import shutil
import subprocess

import pytest

from training import data as data_lib
from training import model_card as card_lib
from training import recipes as recipes_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "models" / "en-es-tiny"
SHIPPED = sorted(p.parent for p in (ROOT / "saved_models").glob("*/metrics.json"))
SECTIONS = [
    "## Use",
    "## Data",
    "## Domain",
    "## Examples",
    "## Recipe",
    "## Command",
    "## Hardware and training time",
    "## Results",
    "## Limitations",
]
# What no card or shipped metrics.json may hold: machine paths, dates and
# times, and the vocabulary of a development diary.
NOT_PORTABLE = re.compile(
    r"/work/|/home/|/tmp/|/root/|\d{4}-\d{2}-\d{2}|\d\d:\d\d UTC|"
    r"\bprevious\b|\bsession\b|\bissue\b",
    re.IGNORECASE,
)


def evaluation(split, beam_size, bleu, chrf):
    return {
        "bleu": bleu,
        "bleu_signature": "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp",
        "chrf": chrf,
        "chrf_signature": "nrefs:var|case:mixed|eff:yes|nc:6|nw:0|space:no",
        "split": split,
        "sources": 10,
        "references": 12,
        "beam_size": beam_size,
        "length_penalty": 0.6 if beam_size > 1 else None,
        "translate_seconds": 1.5,
        "backend": "jax",
        "command": f"python -m training.evaluate /work/runs/tiny --split {split} "
        f"--beam-size {beam_size}",
        "machine": "x86_64, vm",
        "examples": [
            {
                "source": "I love you.",
                "hypothesis": "Te quiero.",
                "references": ["Te amo."],
            }
        ],
    }


@pytest.fixture
def metrics():
    """The tiny fixture model's metrics, evaluated greedy and with beams."""
    metrics = json.loads((TINY / "metrics.json").read_text(encoding="utf-8"))
    metrics["evaluation"] = {
        "test_beam1": evaluation("test", 1, 12.5, 30.25),
        "test_beam4": evaluation("test", 4, 13.0, 31.0),
        "valid_beam1": evaluation("valid", 1, 11.0, 29.5),
        "valid_beam4": evaluation("valid", 4, 11.5, 30.0),
    }
    return metrics


def front_matter(text):
    """The card's YAML front matter as a dict (top-level keys only without
    PyYAML)."""
    assert text.startswith("---\n")
    block = text[4 : text.index("\n---\n", 4)]
    try:
        import yaml
    except ImportError:  # Keys only: lines that start a top-level mapping.
        return {m: None for m in re.findall(r"^([A-Za-z][\w-]*):", block, re.M)}
    return yaml.safe_load(block)


def test_front_matter_is_hub_metadata_with_every_evaluation(metrics):
    meta = front_matter(card_lib.model_card(metrics, "en-es-tiny"))
    keys = {"library_name", "pipeline_tag", "language", "license", "datasets"}
    assert keys | {"metrics", "model-index"} <= set(meta)
    pytest.importorskip("yaml")
    assert meta == card_lib.card_metadata(metrics, "en-es-tiny")
    assert meta["library_name"] == "keras"
    assert meta["pipeline_tag"] == "translation"
    assert meta["language"] == ["en", "es"]
    assert meta["license"] == "cc-by-2.0"
    assert meta["datasets"] == ["Helsinki-NLP/tatoeba"]
    assert meta["metrics"] == ["bleu", "chrf"]
    (model,) = meta["model-index"]
    assert model["name"] == "en-es-tiny"
    test, valid = model["results"]
    assert test["task"]["type"] == "translation"
    assert (test["dataset"]["split"], valid["dataset"]["split"]) == ("test", "valid")
    assert [(m["type"], m["value"], m["name"]) for m in test["metrics"]] == [
        ("bleu", 12.5, "BLEU (greedy)"),
        ("chrf", 30.25, "chrF (greedy)"),
        ("bleu", 13.0, "BLEU (beam 4)"),
        ("chrf", 31.0, "chrF (beam 4)"),
    ]
    assert [m["value"] for m in valid["metrics"]] == [11.0, 29.5, 11.5, 30.0]


def test_multi30k_cards_name_the_datas_own_terms(metrics):
    metrics.update(dataset="multi30k-en-de", languages=["en", "de"])
    text = card_lib.model_card(metrics, "en-de-multi30k")
    meta = front_matter(text)
    assert meta["license"] == "other"
    assert "license_name" in meta and "license_link" in meta
    assert "offered for research and education" in text
    assert "## Domain\n\nImage captions." in text


def test_sections_come_in_order_and_hold_the_facts(metrics):
    text = card_lib.model_card(metrics, "en-es-tiny")
    positions = [text.index(f"\n{section}\n") for section in SECTIONS]
    assert positions == sorted(positions)
    assert "## Domain\n\nEveryday sentences." in text
    assert "| `spa-eng` | test | greedy | 10 (12) | 12.5 | 30.25 | – | 1.5 |" in text
    assert (
        "| `spa-eng` | valid | beam 4, α=0.6 | 10 (12) | 11.5 | 30.0 | – | 1.5 |"
        in text
    )
    assert f"```bash\n{metrics['command']}\n```" in text
    assert "| I love you. | Te quiero. | Te amo. |" in text
    assert "40 epochs" in text and f"{metrics['steps']:,} steps" in text


def test_recipe_examples_are_listed(metrics):
    metrics["examples"] = ["Where is the train station?", "I like cats."]
    text = card_lib.model_card(metrics, "en-es-tiny")
    assert "- Where is the train station?\n- I like cats.\n" in text
    assert 'text = "Where is the train station?"' in text


def test_the_hub_reads_the_front_matter_back(metrics):
    # The card as the Hub parses it: every evaluation is an EvalResult.
    from huggingface_hub import ModelCard

    card = ModelCard(card_lib.model_card(metrics, "en-es-tiny"))
    assert card.data.language == ["en", "es"] and card.data.license == "cc-by-2.0"
    found = {
        (r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results
    }
    assert found[("test", "BLEU (greedy)")] == 12.5
    assert found[("valid", "chrF (beam 4)")] == 30.0
    assert len(found) == 8


def test_make_portable_replaces_machine_paths(metrics):
    metrics["config"].update(out="/work/runs/tiny", data_dir="/data/corpora")
    metrics["command"] = (
        "KERAS_BACKEND=jax taskset -c 0 python -m training.train --dataset spa-eng "
        "--data-dir /data/corpora --out /work/runs/tiny --epochs 40"
    )
    original = copy.deepcopy(metrics)
    portable = card_lib.make_portable(metrics, "en-es")
    assert metrics == original  # A copy; the input is left alone.
    assert portable["config"]["out"] == "runs/en-es"
    assert portable["config"]["data_dir"] is None
    assert portable["command"] == (
        "KERAS_BACKEND=jax taskset -c 0 python -m training.train --dataset spa-eng "
        "--out runs/en-es --epochs 40"
    )
    test = portable["evaluation"]["test_beam4"]
    assert test["command"] == (
        "python -m training.evaluate runs/en-es --split test --beam-size 4"
    )
    assert test["machine"] == "x86_64"
    # Relative folders are portable already and stay.
    metrics["evaluation"]["test_beam4"]["command"] = (
        "python -m training.evaluate saved_models/en-es --split test --beam-size 4"
    )
    kept = card_lib.make_portable(metrics, "en-es")["evaluation"]["test_beam4"]
    assert kept["command"].split()[3] == "saved_models/en-es"
    assert portable["domain"] == "everyday sentences"
    assert portable["examples"] == list(recipes_lib.load_recipe("en-es").examples)
    assert not NOT_PORTABLE.search(json.dumps(portable))
    assert card_lib.make_portable(portable, "en-es") == portable


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda path: path.name)
def test_shipped_cards_are_generated_from_portable_metrics(folder):
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    card = (folder / "model_card.md").read_text(encoding="utf-8")
    assert card == card_lib.model_card(metrics, folder.name)
    assert card_lib.make_portable(metrics, folder.name) == metrics
    for text in (card, json.dumps(metrics, ensure_ascii=False)):
        assert not NOT_PORTABLE.search(text), NOT_PORTABLE.search(text)
    corpora = [p["dataset"] for p in metrics["config"].get("mix") or []]
    domains = [
        data_lib.get_dataset_info(d).domain for d in corpora or [metrics["dataset"]]
    ]
    assert metrics["domain"] == " and ".join(dict.fromkeys(domains))
    recipe = recipes_lib.load_recipe(metrics["config"]["recipe"])
    assert metrics["examples"] == list(recipe.examples)
    assert set(front_matter(card)) >= {"library_name", "license", "model-index"}


def test_shipped_cards_code_blocks_are_formatted():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    cards = [str(folder / "model_card.md") for folder in SHIPPED]
    result = subprocess.run(
        [ruff, "format", "--check", *cards], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_mixed_model_card_names_every_corpus_and_the_mix(metrics):
    metrics.update(dataset="deu-eng", languages=["en", "de"])
    metrics["config"]["mix"] = [
        {"dataset": "deu-eng", "repeat": 1, "min_words": 0, "max_words": None},
        {"dataset": "multi30k-en-de", "repeat": 2, "min_words": 0, "max_words": None},
    ]
    metrics["train_mix"] = {
        "deu-eng": {"read": 100, "kept": 100, "repeat": 1, "pairs": 100},
        "multi30k-en-de": {"read": 30, "kept": 30, "repeat": 2, "pairs": 60},
    }
    metrics["domain"] = "everyday sentences and image captions"
    text = card_lib.model_card(metrics, "en-de")
    assert "the `deu-eng` pairs of Tatoeba" in text
    assert "the `multi30k-en-de` pairs of Multi30k" in text
    assert "| `multi30k-en-de` | 30 | 30 | 2 | 60 |" in text
    assert "Short everyday sentences and phrases (Tatoeba) and" in text
    pytest.importorskip("yaml")
    assert front_matter(text)["datasets"] == [
        "Helsinki-NLP/tatoeba",
        "bentrevett/multi30k",
    ]


def test_results_name_the_test_set_and_show_lengths_and_repeats(metrics):
    metrics.update(dataset="deu-eng", languages=["en", "de"])
    other = evaluation("test", 1, 20.5, 45.0)
    other.update(dataset="multi30k-en-de", repeated_trigram_percent=1.5)
    other["by_length"] = {
        "≤ 6": {"sources": 2, "bleu": 30.0, "chrf": 50.0},
        "≥ 11": {"sources": 8, "bleu": 18.25, "chrf": 44.0},
    }
    metrics["evaluation"]["multi30k-en-de:test_beam1"] = other
    text = card_lib.model_card(metrics, "en-de")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    # The model's own corpus first, then the other test set.
    assert rows[0].startswith("| `deu-eng` | test | greedy |")
    assert "| `multi30k-en-de` | test | greedy | 10 (12) | 20.5 | 45.0 | 1.5 |" in text
    assert (
        "| `multi30k-en-de` | test | greedy | 30.0 (50.0), 2 sources | "
        "18.25 (44.0), 8 sources |" in text
    )
    pytest.importorskip("yaml")
    datasets = [
        (r["dataset"]["name"], r["dataset"]["split"])
        for r in front_matter(text)["model-index"][0]["results"]
    ]
    assert datasets[-1] == ("Multi30k (task 1) multi30k-en-de", "test_2016_flickr")


def test_a_mix_recorded_without_its_repeat_still_makes_a_card(metrics):
    # Metrics of runs that recorded pairs read, kept and trained only.
    metrics.update(dataset="deu-eng", languages=["en", "de"])
    metrics["config"]["mix"] = [{"dataset": "deu-eng"}, {"dataset": "multi30k-en-de"}]
    metrics["train_mix"] = {
        "deu-eng": {"read": 100, "kept": 100, "pairs": 100},
        "multi30k-en-de": {"read": 30, "kept": 30, "pairs": 60},
    }
    assert "| `multi30k-en-de` | 30 | 30 | 2 | 60 |" in card_lib.model_card(
        metrics, "x"
    )
