"""benchmarks/report.py: docs/performance.md is what the results generate."""

import json
import pathlib
import re

from benchmarks import report

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_committed_performance_doc_is_generated_from_the_results():
    committed = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert committed == report.report(), "run: python -m benchmarks.report"


def test_the_doc_holds_every_full_result_and_no_machine_paths_or_dates():
    text = report.report()
    results = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(report.RESULTS.glob("*.json"))
        if not p.name.endswith(".quick.json")
    ]
    assert results
    for result in results:
        assert report.SECTIONS[result["benchmark"]][0] in text
        assert result["table"].strip() in text
    assert not re.search(r"/work/|/root/|/home/|\d{4}-\d{2}-\d{2}", text)


def test_a_result_renders_portably(tmp_path):
    result = {
        "benchmark": "bench_decoding",
        "command": "/opt/py/bin/python3.11 -m benchmarks.bench_decoding "
        "--model /srv/checkout/saved_models/en-es",
        "quick": False,
        "machine": {"cpu_model": "CPU X", "cpu_count": 4, "machine": "arm64"},
        "settings": {"model": "/srv/checkout/saved_models/en-es", "data_dir": "/d"},
        "summary": {"jax": {"latency_p50_ms": 20.5}},
        "table": "| metric | jax |\n|---|---|\n| latency | 20.5 |",
    }
    (tmp_path / "bench_decoding.json").write_text(json.dumps(result))
    quick = dict(result, quick=True, table="| quick |")
    (tmp_path / "bench_decoding.quick.json").write_text(json.dumps(quick))
    text = report.report(tmp_path)
    assert "python -m benchmarks.bench_decoding --model en-es\n" in text
    assert "Settings: model en-es." in text
    assert "| latency p50 ms | 20.5 |" in text
    assert "| quick |" not in text and "/srv" not in text and "data dir" not in text


def test_one_benchmark_in_two_files_gives_a_section_per_file(tmp_path):
    result = {
        "benchmark": "bench_app_soak",
        "command": "python -m benchmarks.bench_app --soak --backends jax",
        "quick": False,
        "machine": {},
        "settings": {},
        "table": "| metric | jax |\n|---|---|\n| requests | 10 |",
    }
    (tmp_path / "bench_app_soak.json").write_text(json.dumps(result))
    tensorflow = dict(
        result, table="| metric | tensorflow |\n|---|---|\n| requests | 9 |"
    )
    (tmp_path / "bench_app_soak_tensorflow.json").write_text(json.dumps(tensorflow))
    text = report.report(tmp_path)
    first = text.index("## " + report.SECTIONS["bench_app_soak"][0] + "\n")
    second = text.index("## " + report.SECTIONS["bench_app_soak_tensorflow"][0] + "\n")
    assert first < second
    assert text.index("| requests | 10 |") < second < text.index("| requests | 9 |")


def test_a_long_mapping_in_a_summary_shows_its_first_entries(tmp_path):
    ranking = {f"method-{i}": float(i) for i in range(40)}
    result = {
        "benchmark": "bench_alignment",
        "command": "python -m benchmarks.bench_alignment",
        "quick": False,
        "machine": {},
        "summary": {
            "jax": {
                "mean_aer": ranking,
                "best_mean": "method-0",
                "left_out": {"truncated": 0, "words differ": 1},
            }
        },
        "table": "| method |",
    }
    (tmp_path / "bench_alignment.json").write_text(json.dumps(result))
    rows = report.report(tmp_path).splitlines()
    row = next(line for line in rows if "mean aer" in line)
    assert "method-0: 0.0, method-1: 1.0" in row and "method-4: 4.0" in row
    assert "method-5:" not in row and "35 more in the JSON" in row
    # A mapping reads as text, not as a Python dict.
    assert "| left out | truncated: 0, words differ: 1 |" in rows
