"""deploy/space.py: what the Space gets, LFS for every binary, offline dry run."""

import pathlib
import shutil
import subprocess

import pytest

from deploy import space

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_FILES = ("model.keras", "spm.model", "spm.vocab.txt", "metrics.json")


def is_binary(path):
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def git_filters(paths):
    """`git check-attr filter` of each path (works without git-lfs)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    output = subprocess.run(
        ["git", "check-attr", "filter", "--", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.rsplit(": filter: ", 1) for line in output.splitlines())


def test_the_space_gets_the_app_the_library_and_every_model():
    files = space.space_files()
    assert {"app.py", "requirements.txt", ".gitattributes"} <= set(files)
    assert "keras_mha/__init__.py" in files and "keras_mha/translator.py" in files
    models = [p.parent.name for p in (ROOT / "saved_models").glob("*/model.keras")]
    assert models
    for name in models:
        for file_name in (*MODEL_FILES, "model_card.md"):
            assert f"saved_models/{name}/{file_name}" in files
    for path in files:
        assert not path.startswith(("tests/", "training/", "runs/", "benchmarks/"))
        assert "__pycache__" not in path and not path.endswith(".pyc")
        assert "/checkpoints/" not in path and "/logs/" not in path


def test_every_binary_file_the_space_gets_is_in_lfs():
    files = space.space_files()
    binary = [path for path in files if is_binary(ROOT / path)]
    assert any(path.endswith("model.keras") for path in binary)
    patterns = space.lfs_patterns()
    filters = git_filters(binary)
    for path in binary:
        assert space.in_lfs(path, patterns), path
        assert filters[path] == "lfs", path
    text = [path for path in files if path not in binary]
    assert not any(space.in_lfs(path, patterns) for path in text)


def test_space_readme_configures_a_gradio_space():
    yaml = pytest.importorskip("yaml")
    readme = space.space_readme()
    header = yaml.safe_load(readme.split("---\n")[1])
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert f"gradio[mcp]=={header['sdk_version']}" in requirements.split()
    for folder in (ROOT / "saved_models").glob("*/model.keras"):
        assert f"`{folder.parent.name}`" in readme


def test_dry_run_lists_files_and_sizes_without_the_network(monkeypatch, capsys):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the dry run must not reach the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_network)
    space.main(["someone/keras-mha", "--dry-run"])
    printed = capsys.readouterr().out
    size = (ROOT / "saved_models" / "en-es" / "model.keras").stat().st_size
    assert f"{size:,}  yes  saved_models/en-es/model.keras" in printed
    assert "README.md" in printed
    assert f"{len(space.space_files()) + 1} files" in printed


def test_staging_holds_exactly_the_listed_files(tmp_path):
    space.stage(ROOT, tmp_path)
    staged = sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
    )
    assert staged == sorted([*space.space_files(), "README.md"])
