"""One module per view: each builds its layout inside the current
`gr.Blocks` and wires its own handlers.

A view's handlers are plain methods returning named updates, dicts from
component to value. A view that depends on the translation has `resets`
(its components to update when a new translation arrives) and `reset(state)`
(their new values), which the Translate handler merges into its answer, so
that one request updates every view.

Views drawn in the browser are `gr.HTML` components that mount a renderer
of `explorer/static/explorer.js` (`window.KMHA.mount(name, ...)`). The
renderers share the payload the translation view receives and redraw from
it on the client when the visitor switches heads, layers or steps.
"""

import dataclasses
import hashlib
import json
import os
import pathlib

import gradio as gr

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"
ASSETS = ("explorer.js", "tour.js", "explorer.css")


def _asset_url(name):
    # Relative to the page, so that a root path or a proxy prefix still works;
    # the file relative to the server's working directory where it lies
    # inside it (Gradio resolves it there), so the page names no server
    # path; the content hash makes browsers fetch a changed file.
    path = STATIC / name
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:10]
    cwd = pathlib.Path.cwd().resolve()
    if cwd in path.parents:
        path = pathlib.Path(os.path.relpath(path, cwd))
    return f"gradio_api/file={path.as_posix()}?v={digest}"


def head_html():
    """`<head>` tags loading the renderer and its style sheet (each once)."""
    return (
        f'<link rel="stylesheet" href="{_asset_url("explorer.css")}">'
        f'<script src="{_asset_url("explorer.js")}"></script>'
        f'<script src="{_asset_url("tour.js")}"></script>'
    )


def browser_view(name, events=(), value=None, elem_id=None, **kwargs):
    """A `gr.HTML` drawn by the renderer `name` of `explorer.js`.

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
    return gr.HTML(
        value,
        html_template=f'<div class="kmha-root" data-view="{name}"></div>',
        js_on_load=(
            f"window.KMHA.mount({json.dumps(name)}, element, props, watch, "
            f"{{{emitters}}});"
        ),
        head=head_html(),
        elem_id=elem_id or f"view-{name}",
        elem_classes=["kmha-view"],
        apply_default_css=False,
        **kwargs,
    )


def event_data(event):
    """The dict a renderer sent with `trigger(name, data)` (`{}` if none)."""
    data = event._data if isinstance(event, gr.EventData) else None
    return data if isinstance(data, dict) else {}


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
