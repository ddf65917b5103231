"""Deploy the app to a Hugging Face Space.

    python -m deploy.space USER/NAME --dry-run   # list what would go, offline
    python -m deploy.space USER/NAME             # create or update the Space

The Space gets exactly what the app needs (`SPACE_FILES`): `app.py`, the
`keras_mha` and `explorer` packages, each shipped model's weights, tokenizer,
metrics and card, `requirements.txt` (what the Space installs),
`.gitattributes` (binary files in LFS) and a README whose YAML header
configures the Space (`SPACE_README`). Files on the Space that are not in
this list are deleted in the same commit. The Keras backend is set as the
Space variable `KERAS_BACKEND`. The token comes from `HF_TOKEN` or
`hf auth login`.
"""

import argparse
import fnmatch
import json
import pathlib
import re
import shutil
import sys
import tempfile

if __package__ in (None, ""):  # Started as a file, not with -m.
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What the Space needs, as `huggingface_hub` patterns (`*` crosses folders).
SPACE_FILES = (
    "app.py",
    "requirements.txt",
    ".gitattributes",
    "keras_mha/*.py",
    "explorer/*.py",
    "explorer/static/*",
    "saved_models/*/model.keras",
    "saved_models/*/spm.model",
    "saved_models/*/spm.vocab.txt",
    "saved_models/*/metrics.json",
    "saved_models/*/model_card.md",
)
IGNORED = ("*/__pycache__/*", "*.pyc")
SPACE_README = """\
---
title: Watch a Transformer Translate
emoji: 🔍
colorFrom: indigo
colorTo: yellow
sdk: gradio
sdk_version: {gradio_version}
python_version: "3.11"
app_file: app.py
pinned: false
license: apache-2.0
short_description: Translate, then explore every attention head (Keras 3)
---

# Watch a Transformer translate

Translate a sentence, then look at every attention head of the model that
translated it: encoder self-attention, decoder self-attention and
cross-attention, layer by layer. The attention layers and the Transformer are
written by hand with `keras.ops`; the models were trained from scratch.

| model | translates | test BLEU | card |
|---|---|---|---|
{models}
"""


def gradio_version(root=ROOT):
    """The Gradio version pinned in `requirements.txt` (the Space's SDK)."""
    text = (root / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(r"^gradio(?:\[[\w,]+\])?==([\w.]+)", text, re.MULTILINE)
    if not match:
        raise ValueError("requirements.txt pins no gradio version (gradio==X).")
    return match.group(1)


def _model_row(folder):
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    evaluations = [
        e for e in metrics.get("evaluation", {}).values() if e["split"] == "test"
    ]
    best = max(evaluations, key=lambda e: e["bleu"], default=None)
    bleu = (
        f"{best['bleu']} ({'greedy' if best['beam_size'] == 1 else 'beam'})"
        if best
        else "–"
    )
    source, target = metrics["languages"]
    return (
        f"| `{folder.name}` | {source} → {target}, {metrics.get('domain', '')} "
        f"| {bleu} | [model_card.md](saved_models/{folder.name}/model_card.md) |"
    )


def space_readme(root=ROOT):
    """The Space's README.md: its YAML configuration and the models."""
    folders = sorted(p.parent for p in (root / "saved_models").glob("*/model.keras"))
    return SPACE_README.format(
        gradio_version=gradio_version(root),
        models="\n".join(_model_row(folder) for folder in folders),
    )


def space_files(root=ROOT):
    """The repository files the Space gets, as sorted relative paths."""
    from huggingface_hub.utils import filter_repo_objects

    paths = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts
    )
    return list(
        filter_repo_objects(
            paths, allow_patterns=list(SPACE_FILES), ignore_patterns=list(IGNORED)
        )
    )


def lfs_patterns(root=ROOT):
    """The patterns `.gitattributes` sends to Git LFS."""
    patterns = []
    for line in (root / ".gitattributes").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not line.startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def in_lfs(path, patterns):
    """Whether git sends `path` to LFS: a pattern without a slash matches the
    file name at any depth, as in `.gitattributes`."""
    name = path.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatchcase(path if "/" in p else name, p.lstrip("/")) for p in patterns
    )


def stage(root, folder):
    """Copies the Space's files into `folder` and writes its README there."""
    for relative in space_files(root):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    (folder / "README.md").write_text(space_readme(root), encoding="utf-8")
    return folder


def describe(root=ROOT):
    """The dry-run listing: every file, its size and whether it goes to LFS."""
    patterns = lfs_patterns(root)
    rows = [(path, (root / path).stat().st_size) for path in space_files(root)]
    rows.append(("README.md", len(space_readme(root).encode("utf-8"))))
    lines = [f"{'bytes':>12}  lfs  path"]
    for path, size in sorted(rows):
        lfs = "yes" if in_lfs(path, patterns) else " - "
        lines.append(f"{size:>12,}  {lfs}  {path}")
    total = sum(size for _, size in rows)
    lines.append(f"{total:>12,}  total, {len(rows)} files")
    return "\n".join(lines)


def deploy(repo_id, backend="jax", private=False, root=ROOT):
    """Creates or updates the Space `repo_id` in one commit."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(
        repo_id,
        repo_type="space",
        space_sdk="gradio",
        private=private,
        exist_ok=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        stage(root, pathlib.Path(folder))
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="space",
            folder_path=folder,
            allow_patterns=[*SPACE_FILES, "README.md"],
            ignore_patterns=list(IGNORED),
            delete_patterns="*",  # What this upload does not hold goes.
            commit_message="Deploy the app and the shipped models",
        )
    api.add_space_variable(repo_id, "KERAS_BACKEND", backend)
    return commit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo_id", help="the Space, USER/NAME")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the files and sizes that would be uploaded; no network",
    )
    parser.add_argument(
        "--backend",
        default="jax",
        choices=("jax", "tensorflow"),
        help="KERAS_BACKEND of the Space (default: jax)",
    )
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    if args.dry_run:
        print(f"Space {args.repo_id}, KERAS_BACKEND={args.backend}, would get:")
        print(describe())
        return
    commit = deploy(args.repo_id, args.backend, args.private)
    print(f"Deployed: {commit}")


if __name__ == "__main__":
    main()
