"""Model shapes compared on the same training minutes: which one to train.

    python -m benchmarks.bench_architecture --recipe en-fr --minutes 15
    python -m benchmarks.bench_architecture --quick   # smoke test, tiny data

Each candidate is the recipe with its shape set (by default 2+2, 3+3 and
4+4 layers of width 256 with 4 heads and a 1024-wide feed-forward layer, and
3+3 layers of width 384 with 6 heads and a 1536-wide feed-forward layer).
Each is trained from scratch by `python -m training.train` exactly as a user
runs it, in its own process, for the same `--minutes` of training time
(`--time-budget-minutes`), on the recipe's corpora and with the shipped
model's tokenizer (`saved_models/<recipe>/spm.model`, copied into the run
folder, so every candidate has the same vocabulary and none trains one).
The table gives each one's updates, parameters and its validation loss at
the end of the budget (label-smoothed cross-entropy on the recipe's
validation splits, the number `training.train` keeps checkpoints by): the
lowest loss after the same minutes is the shape to train. A short budget
favours models that learn fast; it ranks shapes for a run of about that
length, not for any length.
"""

import argparse
import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

NAME = "bench_architecture"

CANDIDATES = {
    "2+2 d256": dict(num_layers=2, hidden_dim=256, num_heads=4, intermediate_dim=1024),
    "3+3 d256": dict(num_layers=3, hidden_dim=256, num_heads=4, intermediate_dim=1024),
    "4+4 d256": dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024),
    "3+3 d384": dict(num_layers=3, hidden_dim=384, num_heads=6, intermediate_dim=1536),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    recipe: str = "en-fr"
    minutes: float = 15.0  # Training time of each candidate.
    tokenizer: str | None = None  # Default: saved_models/<recipe>/spm.model.
    data_dir: str | None = None
    candidates: dict = dataclasses.field(default_factory=lambda: dict(CANDIDATES))
    extra: tuple = ()  # More `training.train` flags for every candidate.


QUICK = dict(
    recipe="en-es",
    minutes=0.1,
    tokenizer="tests/fixtures/models/en-es-tiny/spm.model",
    data_dir="tests/fixtures",
    candidates={
        "1+1 d32": {"num_layers": 1, "hidden_dim": 32, "intermediate_dim": 64},
        "2+2 d32": {"num_layers": 2, "hidden_dim": 32, "intermediate_dim": 64},
    },
    extra=("--vocabulary-size", "200", "--batch-tokens", "256", "--epochs", "2"),
)


def flags(overrides):
    """`training.train` flags for a candidate's settings."""
    return [
        part
        for name, value in overrides.items()
        for part in ("--" + name.replace("_", "-"), str(value))
    ]


def train_command(settings, out, overrides):
    command = [
        sys.executable,
        "-m",
        "training.train",
        "--recipe",
        settings.recipe,
        "--out",
        str(out),
        "--resume",  # The folder holds the copied tokenizer.
        "--time-budget-minutes",
        str(settings.minutes),
        "--average-last",
        "1",
        *flags(overrides),
        *settings.extra,
    ]
    if settings.data_dir:
        command += ["--data-dir", settings.data_dir]
    return command


def run_candidate(settings, name, overrides, root):
    out = pathlib.Path(root) / name.replace(" ", "_").replace("+", "-")
    out.mkdir(parents=True)
    tokenizer = settings.tokenizer or f"saved_models/{settings.recipe}/spm.model"
    shutil.copy(tokenizer, out / "spm.model")
    command = train_command(settings, out, overrides)
    harness.log(f"[{name}] {' '.join(command[1:])}")
    log = out / "train.log"
    with open(log, "w", encoding="utf-8") as stream:
        code = subprocess.run(
            command, stdout=stream, stderr=subprocess.STDOUT
        ).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-5:]
        return {"error": f"training exited with code {code}", "log_tail": tail}
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    valid_loss = min(metrics["valid_loss"].values())
    result = dict(
        overrides=overrides,
        parameters=metrics["parameters"],
        steps=metrics["steps"],
        epochs_trained=metrics["epochs_trained"],
        train_seconds=metrics["train_seconds"],
        seconds_per_update=round(
            metrics["train_seconds"] / max(metrics["steps"], 1), 3
        ),
        valid_loss=round(valid_loss, 4),
    )
    harness.log(
        f"[{name}] {result['steps']} updates, validation loss {result['valid_loss']}"
    )
    return result


def run_worker(settings):
    with tempfile.TemporaryDirectory() as root:
        return {
            "candidates": {
                name: run_candidate(settings, name, overrides, root)
                for name, overrides in settings.candidates.items()
            }
        }


# ------------------------------------------------------------ parent
def report(backends, settings):
    headers = [
        "backend",
        "candidate",
        "parameters",
        "updates",
        "s/update",
        f"validation loss after {settings.minutes:g} min",
    ]
    rows, summary = [], {}
    for backend, result in backends.items():
        if "error" in result:
            rows.append([backend, result["error"]] + ["-"] * 4)
            continue
        done = {name: r for name, r in result["candidates"].items() if "error" not in r}
        for name, r in result["candidates"].items():
            if "error" in r:
                rows.append([backend, name, r["error"]] + ["-"] * 3)
                continue
            rows.append(
                [
                    backend,
                    name,
                    f"{r['parameters']:,}",
                    f"{r['steps']:,}",
                    harness.fmt(r["seconds_per_update"], 3),
                    harness.fmt(r["valid_loss"], 4),
                ]
            )
        if done:
            best = min(done, key=lambda name: done[name]["valid_loss"])
            summary[backend] = {
                "best": best,
                "valid_loss": {name: r["valid_loss"] for name, r in done.items()},
            }
    table = harness.markdown_table(headers, rows)
    best = ", ".join(f"{b}: {s['best']}" for b, s in summary.items())
    note = (
        f"\nRecipe {settings.recipe}, {settings.minutes:g} min each; "
        f"lowest validation loss: {best}."
    )
    return table, table + "\n" + note, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.set_defaults(backends=("tensorflow",))
    parser.add_argument("--recipe", default=Settings.recipe)
    parser.add_argument("--minutes", type=float, default=Settings.minutes)
    parser.add_argument("--tokenizer", help="spm.model of the recipe's vocabulary")
    parser.add_argument("--data-dir", help="corpus folder (default: ../shared/data)")
    parser.add_argument(
        "--candidates",
        type=json.loads,
        help='JSON {name: {setting: value}}, e.g. \'{"4+4": {"num_layers": 4}}\'',
    )
    args = parser.parse_args(argv)
    settings = Settings(
        recipe=args.recipe,
        minutes=args.minutes,
        tokenizer=args.tokenizer,
        data_dir=args.data_dir,
        **({"candidates": args.candidates} if args.candidates else {}),
    )
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK)

    if args.backend_worker:
        harness.finish_worker(args, run_worker(settings))
        return 0

    backends = harness.run_workers(__file__, args.backends)
    table, text, summary = report(backends, settings)
    print(text)
    path = harness.write_results(
        NAME, args, dataclasses.asdict(settings), backends, table, summary
    )
    harness.log(f"results written to {path}")
    return harness.exit_code(backends)


if __name__ == "__main__":
    sys.exit(main())
