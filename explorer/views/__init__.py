"""One module per view: each builds its layout inside the current
`gr.Blocks` and wires its own handlers.

A view's handlers are plain methods returning named updates, dicts from
component to value. A view that depends on the translation has `resets`
(its components to update when a new translation arrives) and `reset(state)`
(their new values), which the Translate handler merges into its answer, so
that one request updates every view.

Views drawn in the browser are `gr.HTML` components that mount a renderer
of the ES modules in `explorer/static/` (the entry `explorer.js` imports
`core/*.js` and one module per view in `views/*.js`). The renderers share
the payload the translation view receives and redraw from it on the client
when the visitor switches heads, layers or steps.

Loading: Gradio serves the folder (`gr.set_static_paths`) under
`gradio_api/file=...`, where the modules' relative imports resolve. Each
view's `js_on_load` imports the entry by its content-hashed URL and mounts
once the import resolves (Gradio's `head` injector would load a
`<script type="module">` as a classic script, and `js_on_load` may run
before a deferred module, so the mount waits on the import itself). The
other modules are imported by plain relative URLs; an import map, which the
page's `head` adds, points each at its content-hashed URL, so that a
changed file is fetched again (browsers that take no import map after the
page's own modules load the plain URLs, which Gradio revalidates by ETag).
"""

import dataclasses
import hashlib
import json
import os
import pathlib

import gradio as gr

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
ENTRY = "explorer.js"  # The entry module: imports the core, the views, the tour.
STYLE = "explorer.css"
# Every file the page loads, relative to STATIC: the style sheet and the
# modules.
ASSETS = (
    STYLE,
    *sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js")),
)


def _asset_url(name, hashed=True):
    # Relative to the page, so that a root path or a proxy prefix still works;
    # the file relative to the server's working directory where it lies
    # inside it (Gradio resolves it there), so the page names no server
    # path; the content hash makes browsers fetch a changed file.
    path = STATIC / name
    cwd = pathlib.Path.cwd().resolve()
    if cwd in path.parents:
        path = pathlib.Path(os.path.relpath(path, cwd))
    url = f"gradio_api/file={path.as_posix()}"
    if not hashed:
        return url
    digest = hashlib.sha1((STATIC / name).read_bytes()).hexdigest()[:10]
    return f"{url}?v={digest}"


def _import_map():
    """`{plain URL: hashed URL}` of every module the entry imports (with
    "./": an import map reads any other relative URL as a package name)."""
    modules = [name for name in ASSETS if name.endswith(".js") and name != ENTRY]
    return {
        f"./{_asset_url(name, hashed=False)}": f"./{_asset_url(name)}"
        for name in modules
    }


def head_html():
    """`<head>` tags: the style sheet, and a script that adds the modules'
    import map (each once: Gradio skips a tag the page already has)."""
    imports = json.dumps({"imports": _import_map()})
    # Gradio re-creates a head `<script>` without its type, so the map is
    # added by a classic script. `<` escaped: nothing closes the tag early.
    add_map = (
        'document.head.append(Object.assign(document.createElement("script"), '
        f'{{type: "importmap", textContent: {json.dumps(imports)}}}));'
    ).replace("<", "\\u003c")
    return (
        f'<link rel="stylesheet" href="{_asset_url(STYLE)}"><script>{add_map}</script>'
    )


def browser_view(name, events=(), value=None, elem_id=None, **kwargs):
    """A `gr.HTML` drawn by the renderer `name` (`explorer/static/views/`).

    Args:
        name: the renderer, e.g. "attention".
        events: custom events the renderer may send to the server; each
            becomes a listener method of the component (`view.whatif(...)`).
        value: the initial JSON value.
    """
    emitters = ", ".join(
        f"{json.dumps(event)}: (data) => trigger({json.dumps(event)}, data)"
        for event in events
    )
    # Against the page's base URL, as a `<script src>` would be: Gradio runs
    # this code from its own module, against whose URL `import()` would
    # otherwise resolve it.
    return gr.HTML(
        value,
        html_template=f'<div class="kmha-root" data-view="{name}"></div>',
        js_on_load=(
            f"import(new URL({json.dumps(_asset_url(ENTRY))}, document.baseURI))"
            f".then((kmha) => kmha.mount({json.dumps(name)}, element, props, "
            f"watch, {{{emitters}}}));"
        ),
        head=head_html(),
        elem_id=elem_id or f"view-{name}",
        elem_classes=["kmha-view"],
        apply_default_css=False,
        **kwargs,
    )


def event_value(event, name, default=None):
    """The field `name` of the data a renderer sent with
    `trigger(event_name, {name: ...})`, read as Gradio documents it (an
    attribute of the `gr.EventData`), or `default` when it sent none."""
    if not isinstance(event, gr.EventData):
        return default
    try:
        return getattr(event, name, default)
    except TypeError:  # No data at all: Gradio looks the name up in None.
        return default


@dataclasses.dataclass
class Shared:
    """What the views share: the service, the session state and the
    components that other views read or write.

    Attributes:
        service: the `explorer.service.Service`.
        state: `gr.State` holding an `ExplorerState` (or `None`).
        payload: the `gr.HTML` whose value is the translation payload all
            browser views draw from.
        output: the translation textbox.
        info: the Markdown line about the translation.
    """

    service: object
    state: gr.State
    payload: gr.HTML = None
    output: gr.Textbox = None
    info: gr.Markdown = None
