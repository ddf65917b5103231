"""Training recipes: one TOML file per shipped model, named like its folder.

`en-es.toml` is the recipe of `saved_models/en-es`, and so on. A recipe holds
every setting that changes the trained weights (`[config]`, the fields of
`training.train.TrainConfig` apart from where data and outputs live) and a
few `examples` of the domain the model was trained for (the app offers them,
the model card lists them). Command-line flags override any value.

Example:

```python
recipe = load_recipe("en-es")
recipe.config["dataset"]  # "spa-eng"
recipe_for_dataset("multi30k-en-de").name  # "en-de-multi30k"
```
"""

import dataclasses
import importlib.resources
import pathlib
import tomllib

# Fields a recipe may not set: where data and outputs live, and how a run
# starts or is spread over devices. They never change the trained weights.
NOT_RECIPE = (
    "recipe",
    "out",
    "data_dir",
    "resume",
    "overwrite",
    "distribute",
    "host_devices",
    "input_pipeline",
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe read from a TOML file.

    Args:
        name: the file's stem, e.g. `"en-es"` (the shipped model's folder).
        config: `TrainConfig` field values, e.g. `{"dataset": "spa-eng", ...}`.
        examples: source sentences of the model's domain.
    """

    name: str
    config: dict
    examples: tuple[str, ...] = ()


def _recipe_files():
    folder = importlib.resources.files(__name__)
    return {
        entry.name.removesuffix(".toml"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def names():
    """The shipped recipes' names, sorted."""
    return sorted(_recipe_files())


def load_recipe(name_or_path):
    """Reads a shipped recipe by name, or any recipe file by its path.

    Raises:
        ValueError: for an unknown name or a file with unknown keys.
    """
    files = _recipe_files()
    if str(name_or_path) in files:
        name, text = str(name_or_path), files[str(name_or_path)].read_text("utf-8")
    elif str(name_or_path).endswith(".toml") and pathlib.Path(name_or_path).is_file():
        path = pathlib.Path(name_or_path)
        name, text = path.stem, path.read_text(encoding="utf-8")
    else:
        raise ValueError(
            "Received an invalid value for argument `recipe`, expected one of "
            f"{tuple(sorted(files))} or the path of a .toml file. "
            f"Received: recipe={str(name_or_path)!r}"
        )
    values = tomllib.loads(text)
    unknown = set(values) - {"config", "examples"}
    refused = set(values.get("config", {})) & set(NOT_RECIPE)
    if unknown or refused:
        raise ValueError(
            f"Recipe {name!r} has keys a recipe cannot hold: "
            f"{sorted(unknown | refused)}. A recipe has `examples` and a "
            "`[config]` table of settings that change the trained weights."
        )
    config = dict(values.get("config", {}))
    return Recipe(name, config, tuple(values.get("examples", ())))


def recipe_for_dataset(dataset):
    """The shipped recipe that trains on `dataset`.

    Raises:
        ValueError: when no shipped recipe uses `dataset`.
    """
    for name in names():
        recipe = load_recipe(name)
        if recipe.config.get("dataset") == dataset:
            return recipe
    raise ValueError(
        f"No recipe trains on dataset {dataset!r}; the recipes are "
        f"{', '.join(names())} (in training/recipes/). Choose one with "
        "`--recipe NAME` (flags, `--dataset` among them, override its values) "
        "or write a recipe file and pass `--recipe PATH.toml`."
    )
