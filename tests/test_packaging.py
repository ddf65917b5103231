"""pyproject.toml: the console commands, the packages and their data."""

import importlib
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_console_commands_point_at_main_functions():
    scripts = PROJECT["project"]["scripts"]
    assert set(scripts) == {
        "keras-mha-translate",
        "keras-mha-train",
        "keras-mha-evaluate",
    }
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_every_package_and_the_recipes_are_installed():
    include = PROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.parent.name for p in ROOT.glob("*/__init__.py")]
    for package in ("keras_mha", "training"):
        assert package in packages and f"{package}*" in include
    assert "explorer*" in include  # Picked up once the package exists.
    assert not {"tests", "benchmarks"} & {p.rstrip("*") for p in include}
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["training.recipes"]
    recipes = sorted((ROOT / "training" / "recipes").glob("*.toml"))
    assert recipes and all(any(r.match(p) for p in patterns) for r in recipes)


def test_the_browser_code_is_installed_with_the_app():
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["explorer"]
    static = ROOT / "explorer"
    files = [f for f in (static / "static").rglob("*") if f.is_file()]
    assert files
    for file in files:  # Each matches a pattern relative to the package.
        relative = file.relative_to(static)
        assert any(relative.match(p) for p in patterns), relative


def test_extras_and_the_space_requirements():
    extras = PROJECT["project"]["optional-dependencies"]
    assert {"app", "train", "dev"} <= set(extras)
    assert any(r.startswith("gradio[mcp]") for r in extras["app"])
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8").split()
    assert "gradio[mcp]==6.31.0" in requirements
