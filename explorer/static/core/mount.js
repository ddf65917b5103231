/* Mounting: each gr.HTML of the page calls mount(name, element, props,
 * watch, emitters) once from its js_on_load (explorer/views/__init__.py).
 *
 * A view is `factory(root, emit)` returning some of:
 *   draw(payload)   a new translation arrived (or none: payload null)
 *   onSelect()      the shared selection changed
 *   setValue(value) the server sent this view's own value
 *   relayout        redraw when the view's width changes
 *   redrawOnShow    redraw when its hidden tab is shown (views that ask the
 *                   server only when seen)
 * The "summary" view's value is the payload: it publishes it to the store.
 */
import { publish, safely, store } from "./store.js";

const VIEWS = {};

// register({name: factory, ...}): the views mount() knows.
export function register(views) {
  Object.assign(VIEWS, views);
}

export function mount(name, element, props, watch, emitters) {
  const root = element.querySelector(".kmha-root") || element;
  const factory = VIEWS[name];
  if (!factory) {
    console.error(`KMHA: no view ${name}`);
    return;
  }
  // The view object itself, so that a view's own closures see these too.
  const view = Object.assign(factory(root, emitters || {}), { name, root, dirty: false });
  // A component Gradio rendered again replaces its old view.
  store.views = store.views.filter((v) => v.root.isConnected);
  store.views.push(view);
  watchSize(view);
  if (name === "summary") {
    publish(props.value);
    watch("value", () => publish(props.value));
  } else if (view.setValue) {
    safely(view, () => view.setValue(props.value));
    watch("value", () => safely(view, () => view.setValue(props.value)));
  } else if (view.draw) {
    safely(view, () => view.draw(store.payload));
  }
}

// Redraws a view that changed while hidden, or whose width changed.
function watchSize(view) {
  let lastWidth = 0;
  let hidden = false;
  new ResizeObserver(() => {
    const width = view.root.clientWidth;
    if (width === 0) {
      hidden = true;
      return;
    }
    const resized = Math.abs(width - lastWidth) > 40;
    const shown = hidden && view.redrawOnShow;
    hidden = false;
    lastWidth = width;
    if ((view.dirty || shown || (resized && view.relayout)) && store.payload) {
      safely(view, () => (view.onSelect ? view.onSelect() : view.draw(store.payload)));
    }
  }).observe(view.root);
}
