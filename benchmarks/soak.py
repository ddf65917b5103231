"""A day of visitors in a few minutes: the soak workload of
`python -m benchmarks.bench_app --soak`.

`clients` threads, each with its own `gradio_client.Client` and its own
seeded random generator, send requests back to back to a running
`python app.py` for `minutes`, a mix of what visitors do:

    45 %  /translate   greedy or beam (every offered beam size), top_k 0-10,
                       a forced prefix one time in five
    15 %  /score       a given translation
    10 %  /align       the model's own output, a random method
    10 %  /attention   a random kind, layer 0, head 0
     8 %  /head        a random kind and query
     7 %  /attribute   gradient x input
     5 %  permalink    the page with `?model=&text=` (HTTP GET)

on every model the server offers, with inputs of 1 to 300 characters cut
from a pool of sentences (everyday ones and scene descriptions). Every
request is valid, so any error counts. Beam hypotheses are picked in the
page by private events that `gradio_client` cannot call: the soak leaves
them to the browser tests.

The first `warmup_share` of the time is warm-up; latencies after it are
summarised. The server's resident memory (`VmRSS`, all its processes) is
read at the start, at the end of the warm-up and at the end, and the
number of compiled programs per model from the server's log (`programs:`
lines, which `app.py` writes when the count changes).
"""

import concurrent.futures
import random
import re
import threading
import time
import urllib.parse
import urllib.request

from benchmarks import harness

SENTENCES = (
    "Where is the train station?",
    "I would like a cup of coffee, please.",
    "She has lived in this city for ten years.",
    "We didn't know that the museum was closed on Mondays.",
    "The old man gave his granddaughter a red bicycle for her birthday.",
    "The children are playing football in the park near the river.",
    "A man in a blue shirt is riding a bicycle down the street.",
    "Two dogs are running through the snow.",
    "A group of people are standing in front of a building.",
    "Can you help me carry these boxes upstairs?",
    "I think it is going to rain this afternoon.",
    "My grandmother tells the best stories.",
)
PREFIXES = ("El", "La", "Der", "Die", "Le", "Un", "Ein", "Je")
BEAM_SIZES = (2, 3, 4, 6, 8)
ALIGN_METHODS = (
    "deletion+diag+inter",
    "average+union",
    "average",
    "shift-att",
    "layer:0",
)
KINDS = ("encoder", "decoder", "cross")
PROGRAMS_LINE = re.compile(r"programs: (.*)")


def random_text(rng):
    """A text of 1 to 300 characters from the pool of sentences."""
    length = rng.choice((rng.randint(1, 20), rng.randint(20, 80), rng.randint(80, 300)))
    text = ""
    while len(text) < length:
        text += rng.choice(SENTENCES) + " "
    return text[:length].strip() or "Hi"


def request(client, url, models, rng):
    """Sends one random request; returns its kind."""
    model = rng.choice(models)
    text = random_text(rng)
    roll = rng.random()
    if roll < 0.45:
        beam = rng.random() < 0.4
        prefix = rng.choice(PREFIXES) if rng.random() < 0.2 else ""
        client.predict(
            text,
            model,
            "beam" if beam else "greedy",
            rng.choice(BEAM_SIZES),
            rng.randint(0, 10),
            prefix,
            api_name="/translate",
        )
        return "translate"
    if roll < 0.60:
        client.predict(text, rng.choice(SENTENCES), model, api_name="/score")
        return "score"
    if roll < 0.70:
        client.predict(text, "", model, rng.choice(ALIGN_METHODS), api_name="/align")
        return "align"
    if roll < 0.80:
        client.predict(text, model, rng.choice(KINDS), 0, 0, api_name="/attention")
        return "attention"
    if roll < 0.88:
        client.predict(
            text,
            "",
            model,
            rng.choice(KINDS),
            0,
            0,
            # A query position the text surely has (one piece per word at
            # least; the head view refuses positions past the end).
            rng.randint(0, max(0, min(3, len(text.split()) - 1))),
            api_name="/head",
        )
        return "head"
    if roll < 0.95:
        client.predict(text, "", model, "grad_x_input", 16, api_name="/attribute")
        return "attribute"
    query = urllib.parse.urlencode({"model": model, "text": text})
    with urllib.request.urlopen(f"{url}?{query}", timeout=60) as answer:
        answer.read()
    return "permalink"


def programs(log):
    """`{model: compiled programs}` from the last `programs:` log line."""
    lines = PROGRAMS_LINE.findall(log)
    if not lines:
        return {}
    pairs = (item.split("=") for item in lines[-1].split(", ") if "=" in item)
    return {name: int(count) for name, count in pairs}


def run_soak(server, models, minutes=10.0, clients=8, warmup_share=0.2, seed=0):
    """Runs the workload against `server` (a started `LiveServer`)."""
    from gradio_client import Client

    deadline = time.monotonic() + 60 * minutes
    warm_until = time.monotonic() + 60 * minutes * warmup_share
    records, lock = [], threading.Lock()
    memory = {"start_mb": server.memory_mb()["current_mb"]}

    def client_loop(index):
        rng = random.Random(seed * 1000 + index)
        client = Client(server.url, verbose=False, analytics_enabled=False)
        while time.monotonic() < deadline:
            start = time.perf_counter()
            kind, error = "?", None
            try:
                kind = request(client, server.url, models, rng)
            except Exception as failure:  # Every request is valid: count it.
                error = f"{type(failure).__name__}: {str(failure)[:200]}"
            seconds = time.perf_counter() - start
            with lock:
                records.append((time.monotonic() > warm_until, kind, seconds, error))

    def watch_memory():
        while time.monotonic() < warm_until:
            time.sleep(1)
        memory["after_warmup_mb"] = server.memory_mb()["current_mb"]

    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    watcher.join(timeout=5)
    memory["end_mb"] = server.memory_mb()["current_mb"]
    after = [r for r in records if r[0]]
    errors = [r for r in records if r[3]]
    result = {
        "minutes": minutes,
        "clients": clients,
        "requests": len(records),
        "requests_after_warmup": len(after),
        "errors": len(errors),
        "error_examples": sorted({r[3] for r in errors})[:5],
        "by_kind": {
            kind: sum(1 for r in records if r[1] == kind)
            for kind in sorted({r[1] for r in records})
        },
        "latency": harness.summarize_ms([r[2] for r in after if not r[3]]),
        # Which requests wait: the same summary for each kind of request.
        "latency_by_kind": {
            kind: harness.summarize_ms(
                [r[2] for r in after if r[1] == kind and not r[3]]
            )
            for kind in sorted({r[1] for r in after if not r[3]})
        },
        "memory": memory,
        "programs": programs(server.output(chars=10**7)),
    }
    if memory.get("after_warmup_mb"):
        result["rss_growth_after_warmup"] = round(
            memory["end_mb"] / memory["after_warmup_mb"] - 1, 3
        )
    return result
