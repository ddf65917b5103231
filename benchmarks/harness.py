"""What every benchmark shares: one worker subprocess per Keras backend, the
machine facts, timing statistics, the markdown table and the results file.

A benchmark script runs in two roles. Started by hand it is the *parent*: it
imports no Keras, starts itself once per backend with `KERAS_BACKEND` set and
`--backend-worker`, reads each worker's JSON, prints one combined table and
writes `benchmarks/results/<name>.json`. Started with `--backend-worker` it
measures on the one backend it was started with.
"""

import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
BACKENDS = ("tensorflow", "jax")
# Versions recorded with every result (read from package metadata, so the
# parent does not have to import, and so pick, a backend).
PACKAGES = (
    "keras",
    "tensorflow",
    "jax",
    "jaxlib",
    "keras-hub",
    "gradio",
    "gradio-client",
    "numpy",
)


# ------------------------------------------------------------ arguments
def add_common_arguments(parser):
    """Flags of every benchmark: backends, smoke-test size, output file."""
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        type=lambda text: tuple(b.strip() for b in text.split(",") if b.strip()),
        help="comma-separated Keras backends, each run in its own process "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few repeats: a smoke test, not a measurement",
    )
    parser.add_argument(
        "--output",
        help="results JSON (default: benchmarks/results/<name>.json, "
        "<name>.quick.json with --quick)",
    )
    parser.add_argument("--backend-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)


def log(message):
    """Progress on stderr, so that stdout holds only the final table."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ processes
def run_workers(script, backends):
    """Runs `script` once per backend in a subprocess and collects results.

    Args:
        script: the benchmark's `__file__`; it is started as a module
            (`python -m benchmarks.<name>`, the repository first on
            `PYTHONPATH`) in the current directory, with the parent's
            command-line arguments plus `--backend-worker`.
        backends: backend names.

    Returns:
        `{backend: result}`; a failed worker gives `{"error": "..."}`.
    """
    module = f"benchmarks.{pathlib.Path(script).stem}"
    results = {}
    for backend in backends:
        log(f"=== {module} on {backend} ===")
        with tempfile.TemporaryDirectory() as tmp:
            output = pathlib.Path(tmp) / "result.json"
            command = [sys.executable, "-m", module, *sys.argv[1:]]
            command += ["--backend-worker", "--worker-output", str(output)]
            python_path = os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
            env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=python_path)
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            start = time.perf_counter()
            returncode = subprocess.run(command, env=env).returncode
            seconds = round(time.perf_counter() - start, 1)
            if returncode == 0 and output.is_file():
                results[backend] = json.loads(output.read_text(encoding="utf-8"))
                results[backend]["worker_seconds"] = seconds
            else:
                results[backend] = {"error": f"worker exited with code {returncode}"}
                log(f"[{backend}] failed with exit code {returncode}")
    return results


def finish_worker(args, result):
    """Writes a worker's result (plus its backend) where the parent reads it."""
    keras = sys.modules.get("keras")  # Not imported by every benchmark.
    backend = keras.backend.backend() if keras else os.environ.get("KERAS_BACKEND")
    result = dict(result, backend=backend)
    pathlib.Path(args.worker_output).write_text(
        json.dumps(result, indent=1, default=_to_json), encoding="utf-8"
    )


def _to_json(value):
    """NumPy scalars and arrays as plain numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Not JSON serializable: {type(value).__name__}")


# ------------------------------------------------------------ facts
def package_versions():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model():
    """The CPU's name from /proc/cpuinfo (`platform.processor()` is often '')."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info():
    """The machine the numbers came from; load average says how busy it was."""
    return {
        "processor": platform.processor(),
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "versions": package_versions(),
    }


# ------------------------------------------------------------ timing
def time_interleaved(tasks, warmup, repeats):
    """Times several callables, alternating their order every repeat.

    Interleaving spreads slow drifts of the machine (another process, CPU
    frequency) over every task alike instead of over whichever ran last.

    Args:
        tasks: `{name: callable()}`; each call must block until its work is
            done.
        warmup: untimed calls of each task first (compilation, caches).
        repeats: timed calls of each task.

    Returns:
        `{name: [seconds, ...]}`.
    """
    for task in tasks.values():
        for _ in range(warmup):
            task()
    names = list(tasks)
    seconds = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            tasks[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summarize_ms(seconds):
    """Median, p5, p95, min, max and count of a list of seconds, in ms."""
    ms = np.asarray(seconds, dtype="float64") * 1000.0
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p5_ms": round(float(np.percentile(ms, 5)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "min_ms": round(float(np.min(ms)), 3),
        "max_ms": round(float(np.max(ms)), 3),
        "count": int(ms.size),
    }


# ------------------------------------------------------------ output
def markdown_table(headers, rows):
    """A GitHub markdown table; numbers are printed as given (format first)."""
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def fmt(value, digits=1):
    """A number for a table cell; `-` when it is missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(numerator, denominator, digits=2):
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.{digits}f}"


def lookup(result, path):
    """`result["a"]["b"]` for the path `"a.b"`; None when missing."""
    for key in path.split("."):
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def metric_table(metrics, backends):
    """One row per metric, one column per backend, and (for two) their ratio.

    Args:
        metrics: `(label, path, target, digits)` tuples; `path` is looked up
            in each backend's result (see `lookup`).
        backends: `{backend: worker result}`.
    """
    names = list(backends)
    headers = ["metric", "target", *names]
    if len(names) == 2:
        headers.append(f"{names[0]}/{names[1]}")
    rows = []
    for label, path, target, digits in metrics:
        values = [lookup(backends[name], path) for name in names]
        row = [label, target, *(fmt(value, digits) for value in values)]
        if len(names) == 2:
            row.append(ratio(*values))
        rows.append(row)
    for name in names:
        if "error" in backends[name]:
            rows.append([f"{name} failed", "", backends[name]["error"]])
    return markdown_table(headers, rows)


def write_results(name, args, settings, backends, table, summary=None):
    """Writes `benchmarks/results/<name>.json` (or `--output`) and returns it.

    Args:
        name: benchmark name, e.g. `"bench_attention"`.
        args: the parsed arguments (for `--quick` and `--output`).
        settings: dict of the sizes and repeats that were used.
        backends: `{backend: worker result}`.
        table: the markdown table that was printed.
        summary: optional dict of conclusions (ratios, targets met).
    """
    if args.output:
        path = pathlib.Path(args.output)
    else:
        path = RESULTS_DIR / f"{name}{'.quick' if args.quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = portable(
        {
            "benchmark": name,
            "command": shlex.join(sys.orig_argv),
            "quick": args.quick,
            "machine": machine_info(),
            "settings": settings,
            "summary": summary or {},
            "table": table,
            "backends": backends,
        }
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def portable(value):
    """`value` with no paths of this machine: a result describes itself by
    its command and machine, as a reader runs it from the repository root.

    Paths under the repository become relative (`saved_models/en-es`), other
    absolute paths their last component (`baseline`), the Python executable
    `python`; strings in lists and dicts are rewritten recursively.
    """
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item) for item in value]
    if not isinstance(value, str) or "/" not in value:
        return value
    words = value.split(" ")
    for index, word in enumerate(words):
        if not word.startswith("/"):
            continue
        path = pathlib.Path(word)
        if path.name.startswith("python"):
            words[index] = "python"
        elif path.is_relative_to(ROOT):
            words[index] = str(path.relative_to(ROOT)) or "."
        elif path.is_relative_to(ROOT.parent):
            words[index] = str(pathlib.Path("..") / path.relative_to(ROOT.parent))
        else:
            words[index] = path.name
    return " ".join(words)


def exit_code(backends):
    """Non-zero when a backend failed, so that scripts and CI notice."""
    return 1 if any("error" in result for result in backends.values()) else 0
