"""The Gradio app that watches a Transformer translate.

`build_demo(translators)` assembles the page from one module per view
(`explorer/views/`) and registers the public API (`explorer/api.py`).
Importing this package loads no model: `app.py` loads them and launches.

Example:

```python
from keras_mha import Translator
from explorer import build_demo

demo = build_demo({"en-es": Translator.load("saved_models/en-es")})
demo.launch()
```
"""

from explorer.models import load_models, read_model_cards

__all__ = ["LAUNCH_OPTIONS", "build_demo", "load_models", "read_model_cards"]

# The page needs Gradio, seconds to import; the models do not. So importing
# `explorer` or `explorer.models` leaves Gradio out, and `app.py` compiles
# the default model while Gradio loads.
_PAGE = (
    "INTRO",
    "LAUNCH_OPTIONS",
    "STATE_SESSION_CAPACITY",
    "STATE_TIME_TO_LIVE",
    "TITLE",
    "build_demo",
)


def __getattr__(name):
    if name in _PAGE:
        from explorer import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")
