"""The Gradio app as users run it: cold start, request latency under 1, 4 and
16 concurrent clients, and the server's peak memory.

    python -m benchmarks.bench_app                # full, both backends
    python -m benchmarks.bench_app --startup      # the two starts only
    python -m benchmarks.bench_app --models-dir tests/fixtures/models \\
        --model en-es-tiny --quick                 # smoke test

Per backend, `python app.py` is started with `KERAS_BACKEND`, on a free
localhost port, loading every model of `--models-dir`
(`tests/app_fixtures.LiveServer`, which the app's tests use too). The app
serves its page while it loads and compiles the models in the background.
First start: from starting the process to the first page (HTTP 200) and to
the first successful `/translate` answer on `--model`, with an empty
compilation cache (`KERAS_MHA_JAX_CACHE`, a temporary folder), with the
phases the server logs (imports, building the page, loading and compiling
each model). Cold start: the same for a
second process on that cache, as every start after a deployment's first (on
TensorFlow, which has no such cache, the two are alike). Then, on that
second server, once its background warm-up of the other models has
finished, for each number of clients, that many `gradio_client`
clients (each its own `Client`, each in its own thread, loopback only) send
a bounded number of `/translate` (greedy) and then `/attention` requests,
after one untimed request per sentence and endpoint. Latency is measured
around `predict`; the server's own translation time (the `seconds` that
`/translate` reports) is kept too, to separate decoding from the web stack.
Memory is the peak resident set (`VmHWM` in `/proc/<pid>/status`) of the
server and its child processes, read after the last request. Servers are
stopped at the end, also on errors. `--startup` measures the first and the
cold start only (no clients, no waiting for every model's warm-up) and
writes `bench_app_startup.json`.
"""

import argparse
import concurrent.futures
import dataclasses
import itertools
import os
import pathlib
import re
import sys
import tempfile
import time

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from tests.app_fixtures import LiveServer  # noqa: E402

NAME = "bench_app"
SENTENCES = (
    "Where is the train station?",
    "I would like a cup of coffee, please.",
    "She has lived in this city for ten years.",
    "We didn't know that the museum was closed on Mondays.",
    "Tom said that he would come back tomorrow.",
    "The children are playing in the garden.",
    "Can you help me carry these boxes upstairs?",
    "I think it is going to rain this afternoon.",
)


# The app's API (`translate` and `attention` of explorer/api.py), in one
# place: adjust these two calls when the endpoints' arguments change.
def call_translate(client, text, model):
    return client.submit(text, model, "greedy", 1, api_name="/translate")


def call_attention(client, text, model):
    return client.submit(text, model, "cross", 0, 0, api_name="/attention")


ENDPOINTS = {"translate": call_translate, "attention": call_attention}


@dataclasses.dataclass(frozen=True)
class Settings:
    clients: tuple = (1, 4, 16)  # Concurrent clients, one level at a time.
    requests: int = 32  # Timed requests per endpoint and level.
    startup_timeout: float = 300.0  # Seconds to wait for the first answer.
    # Seconds to wait for the server's whole warm-up (every model, every
    # program a request can need).
    warmup_timeout: float = 1200.0
    request_timeout: float = 120.0  # Seconds to wait for one answer.


FULL = Settings()
QUICK = Settings(clients=(1, 4), requests=4)
STARTUP = Settings(clients=())


# ------------------------------------------------------------ clients
def new_client(url):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


STARTUP_LINE = re.compile(
    r"startup: imports ([\d.]+) s \(Keras ([\d.]+) s, Gradio ([\d.]+) s\), "
    r"page built ([\d.]+) s"
)
FIRST_LINE = re.compile(
    r"warm-up: first answer ready on (\S+): loaded in ([\d.]+) s, compiled in "
    r"([\d.]+) s \(([\d.]+) s after start\)"
)
WARM_LINE = re.compile(
    r"warm-up: (\S+) loaded in ([\d.]+) s, compiled in ([\d.]+) s "
    r"\(([\d.]+) s after start\)"
)


def cold_start(server, model, settings):
    """Seconds from starting the process to the first page and to the first
    translation, and the phases the server logged (imports, building the
    page, loading and compiling each model)."""
    server.wait_until_up(settings.startup_timeout)
    page = time.perf_counter() - server.started
    client = new_client(server.url)
    future = call_translate(client, SENTENCES[0], model)
    future.result(timeout=settings.startup_timeout)
    answer = time.perf_counter() - server.started
    result = {"page_seconds": round(page, 2), "answer_seconds": round(answer, 2)}
    # The server logs the default model's phases once its own warm-up (every
    # request kind) has ended, which can be after the first answer.
    server.wait_for_output(f"warm-up: {model} loaded in", settings.warmup_timeout)
    result.update(startup_phases(server.output(chars=10**6)))
    return result


def startup_phases(log):
    """The start-up phases in a server log: `imports_seconds` (of them
    `keras_import_seconds`, Keras with its backend, and
    `gradio_import_seconds`, Gradio and the page's modules), `build_seconds`,
    the default model's `first_answer_load_seconds`,
    `first_answer_compile_seconds` and `first_answer_ready_seconds` (after
    start; loading and compiling run while Gradio is imported), and per
    model its warm-up line."""
    result = {}
    found = STARTUP_LINE.search(log)
    if found:
        result["imports_seconds"] = float(found[1])
        result["keras_import_seconds"] = float(found[2])
        result["gradio_import_seconds"] = float(found[3])
        result["build_seconds"] = float(found[4])
    found = FIRST_LINE.search(log)
    if found:
        # The default model loads for the first answer; its warm-up line
        # then reports it as already loaded.
        result["first_answer_load_seconds"] = float(found[2])
        result["first_answer_compile_seconds"] = float(found[3])
        result["first_answer_ready_seconds"] = float(found[4])
    result["models"] = {
        name: {
            "load_seconds": float(load),
            "compile_seconds": float(compiled),
            "ready_after_start_seconds": float(after),
        }
        for name, load, compiled, after in WARM_LINE.findall(log)
    }
    return result


def measure_level(model, endpoint, clients, settings):
    """`settings.requests` requests from `len(clients)` concurrent clients."""
    call = ENDPOINTS[endpoint]
    sentences = itertools.cycle(SENTENCES)
    # Each client gets its share of the requests (and of the sentences).
    shares = [[] for _ in clients]
    for i in range(settings.requests):
        shares[i % len(clients)].append(next(sentences))

    def run(client, texts):
        results = []
        for text in texts:
            start = time.perf_counter()
            answer = call(client, text, model).result(timeout=settings.request_timeout)
            results.append((time.perf_counter() - start, answer))
        return results

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(run, c, texts) for c, texts in zip(clients, shares)]
        results = [r for future in futures for r in future.result()]
    wall = time.perf_counter() - start
    summary = harness.summarize_ms([seconds for seconds, _ in results])
    summary["requests_per_second"] = round(len(results) / wall, 2)
    if endpoint == "translate":
        server_seconds = [answer[1]["seconds"] for _, answer in results]
        summary["server_median_ms"] = harness.summarize_ms(server_seconds)["median_ms"]
    return summary


def measure_levels(server, model, settings, backend):
    warm_up = new_client(server.url)
    for call in ENDPOINTS.values():
        for text in SENTENCES:
            call(warm_up, text, model).result(timeout=settings.request_timeout)
    levels = {}
    for count in settings.clients:
        clients = [new_client(server.url) for _ in range(count)]
        level = {}
        for endpoint in ENDPOINTS:
            level[endpoint] = measure_level(model, endpoint, clients, settings)
            harness.log(
                f"[{backend}] {count} client(s) {endpoint}: p50 "
                f"{level[endpoint]['median_ms']:.0f} ms, p95 "
                f"{level[endpoint]['p95_ms']:.0f} ms"
            )
        levels[str(count)] = level
        server.check_alive()
    return levels


def run_soak_worker(args):
    from benchmarks import soak

    backend = os.environ.get("KERAS_BACKEND")
    with tempfile.TemporaryDirectory() as cache:
        env = {"KERAS_MHA_JAX_CACHE": cache}
        with LiveServer(args.models_dir, env, app=args.app) as server:
            server.wait_until_up(FULL.startup_timeout)
            server.wait_for_output("warm-up finished", FULL.warmup_timeout)
            warm = round(time.perf_counter() - server.started, 1)
            models = sorted(
                p.name
                for p in pathlib.Path(args.models_dir).iterdir()
                if (p / "model.keras").is_file()
            )
            result = soak.run_soak(
                server, models, minutes=args.soak_minutes, clients=args.soak_clients
            )
            result["server_warm_seconds"] = warm
    harness.log(f"[{backend}] soak: {result}")
    return {"soak": result}


SOAK_METRICS = (
    ("requests", "soak.requests", "", 0),
    ("server warm-up (every program compiled), s", "soak.server_warm_seconds", "", 1),
    ("requests after warm-up", "soak.requests_after_warmup", "", 0),
    ("errors", "soak.errors", "0", 0),
    ("latency p50 after warm-up, ms", "soak.latency.median_ms", "", 0),
    ("latency p95 after warm-up, ms", "soak.latency.p95_ms", "<= 1000", 0),
    ("latency max after warm-up, ms", "soak.latency.max_ms", "<= 5000", 0),
    ("RSS at start, MB", "soak.memory.start_mb", "", 0),
    ("RSS after warm-up, MB", "soak.memory.after_warmup_mb", "", 0),
    ("RSS at the end, MB", "soak.memory.end_mb", "", 0),
    ("RSS growth after warm-up", "soak.rss_growth_after_warmup", "<= 0.15", 3),
)


def run_worker(args, settings):
    if args.soak:
        return run_soak_worker(args)
    backend = os.environ.get("KERAS_BACKEND")
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {"KERAS_MHA_JAX_CACHE": cache}
        # The very first start compiles everything (JAX: an empty cache).
        with LiveServer(args.models_dir, env, app=args.app) as server:
            first = cold_start(server, args.model, settings)
        result["first_start"] = first
        result["first_start_seconds"] = first["answer_seconds"]
        harness.log(f"[{backend}] first start {first}")
        # Every later start: JAX reads the compiled searches from its cache.
        with LiveServer(args.models_dir, env, app=args.app) as server:
            cold = cold_start(server, args.model, settings)
            result["cold_start"] = cold
            result["cold_start_seconds"] = cold["answer_seconds"]
            harness.log(f"[{backend}] cold start {cold}")
            if not settings.clients:  # `--startup`: the starts only.
                return result
            # Latency without the background warm-up of the other models.
            server.wait_for_output("warm-up finished", settings.warmup_timeout)
            result["warm_seconds"] = round(time.perf_counter() - server.started, 1)
            result["levels"] = measure_levels(server, args.model, settings, backend)
            result["memory"] = server.memory_mb()
        harness.log(f"[{backend}] memory {result['memory']}")
    return result


# ------------------------------------------------------------ parent
def metrics(settings, model):
    """`(label, path in a worker result, target, digits)` of each table row."""
    rows = [
        (
            "first start (empty compilation cache): first page, s",
            "first_start.page_seconds",
            "<= 10",
            1,
        ),
        ("first start: first answer, s", "first_start_seconds", "<= 10", 1),
        ("first start: imports, s", "first_start.imports_seconds", "", 1),
        (
            "first start: imports, of them Keras and its backend, s",
            "first_start.keras_import_seconds",
            "",
            1,
        ),
        (
            "first start: imports, of them Gradio and the page, s",
            "first_start.gradio_import_seconds",
            "",
            1,
        ),
        ("first start: page built, s", "first_start.build_seconds", "", 1),
        (
            "first start: default model loaded, s",
            "first_start.first_answer_load_seconds",
            "",
            1,
        ),
        (
            "first start: default model's Translate compiled, s",
            "first_start.first_answer_compile_seconds",
            "",
            1,
        ),
        (
            "first start: default model's Translate ready, after start, s",
            "first_start.first_answer_ready_seconds",
            "",
            1,
        ),
        (
            "first start: default model, every request kind compiled, s",
            f"first_start.models.{model}.compile_seconds",
            "",
            1,
        ),
        (
            "cold start (compilation cache): first page, s",
            "cold_start.page_seconds",
            "",
            1,
        ),
        ("cold start: first answer, s", "cold_start_seconds", "", 1),
    ]
    if settings.clients:
        rows += [
            (
                "cold start: every model warm (nothing to compile), s",
                "warm_seconds",
                "",
                1,
            ),
            ("peak memory (VmHWM), MB", "memory.peak_mb", "<= 2048", 0),
        ]
    for count in settings.clients:
        for endpoint in ENDPOINTS:
            name, path = f"{count} client(s), {endpoint}", f"levels.{count}.{endpoint}"
            target = "<= 300" if (count, endpoint) == (1, "translate") else ""
            rows.append((f"{name} p50, ms", f"{path}.median_ms", target, 0))
            rows.append((f"{name} p95, ms", f"{path}.p95_ms", "", 0))
        name, path = f"{count} client(s), translate", f"levels.{count}.translate"
        rows.append((f"{name} server time p50, ms", f"{path}.server_median_ms", "", 0))
        rows.append((f"{name} requests/s", f"{path}.requests_per_second", "", 1))
    return rows


def report(settings, backends, model):
    table = harness.metric_table(metrics(settings, model), backends)
    summary = {
        name: {
            "first_start_seconds": harness.lookup(result, "first_start_seconds"),
            "cold_start_seconds": harness.lookup(result, "cold_start_seconds"),
            "peak_memory_mb": harness.lookup(result, "memory.peak_mb"),
            "translate_p50_ms_1_client": harness.lookup(
                result, "levels.1.translate.median_ms"
            ),
        }
        for name, result in backends.items()
    }
    return table, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--app", default=str(harness.ROOT / "app.py"), help="app file")
    parser.add_argument(
        "--models-dir", default="saved_models", help="KERAS_MHA_MODELS_DIR"
    )
    parser.add_argument("--model", default="en-es", help="model folder name")
    parser.add_argument("--requests", type=int, help="per endpoint and level")
    parser.add_argument(
        "--soak", action="store_true", help="the soak workload (benchmarks/soak.py)"
    )
    parser.add_argument(
        "--startup",
        action="store_true",
        help="the first and cold starts only (bench_app_startup.json)",
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--soak-clients", type=int, default=8)
    args = parser.parse_args(argv)
    args.models_dir = str(pathlib.Path(args.models_dir).resolve())
    settings = QUICK if args.quick else STARTUP if args.startup else FULL
    if args.requests:
        settings = dataclasses.replace(settings, requests=args.requests)

    if args.backend_worker:
        harness.finish_worker(args, run_worker(args, settings))
        return 0

    if not pathlib.Path(args.app).is_file():
        harness.log(f"{args.app} not found")
        return 1
    backends = harness.run_workers(__file__, args.backends)
    if args.soak:
        from explorer.models import MAX_PROGRAMS

        rows = list(SOAK_METRICS)
        for result in backends.values():
            for name in harness.lookup(result, "soak.programs") or {}:
                label = f"compiled programs, {name}"
                path = f"soak.programs.{name}"
                if all(r[0] != label for r in rows):
                    rows.append((label, path, f"<= {MAX_PROGRAMS}", 0))
        # Which requests wait: p95 and max after warm-up of each kind.
        for result in backends.values():
            for kind in harness.lookup(result, "soak.latency_by_kind") or {}:
                for stat, key in (("p95", "p95_ms"), ("max", "max_ms")):
                    label = f"{kind}: latency {stat} after warm-up, ms"
                    path = f"soak.latency_by_kind.{kind}.{key}"
                    if all(r[0] != label for r in rows):
                        rows.append((label, path, "", 0))
        table = harness.metric_table(rows, backends)
        print(table)
        settings = dict(
            minutes=args.soak_minutes, clients=args.soak_clients, app=args.app
        )
        settings["models_dir"] = args.models_dir
        path = harness.write_results(
            NAME + "_soak", args, settings, backends, table, {}
        )
        harness.log(f"results written to {path}")
        return harness.exit_code(backends)
    table, summary = report(settings, backends, args.model)
    print(table)
    settings = dict(dataclasses.asdict(settings), app=args.app, model=args.model)
    settings["models_dir"] = args.models_dir
    name = NAME + "_startup" if args.startup else NAME
    path = harness.write_results(name, args, settings, backends, table, summary)
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
