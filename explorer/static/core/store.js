/* The data store every view draws from: the translation payload, the
 * selection the views share (kind, layer, head, ...) and the mounted views.
 *
 * `publish(payload)` (a new translation) redraws every view; `select(patch)`
 * (a visitor's choice) redraws the visible views and marks the hidden ones
 * dirty, redrawn when shown (see mount.js).
 */
import { empty, isVisible } from "./dom.js";

export const store = {
  payload: null,
  views: [],
  sel: {
    kind: "cross",
    layer: 0,
    head: 0,
    mode: "head", // "head" | "layer" | "model"
    merge: false,
    shared: true,
    highlight: null, // {axis: "row" | "col", index}
    method: null, // alignment method
  },
  cache: new Map(), // matrices of the payload, by serial/kind/layer/head
  headPick: null, // a row another view asked the head view to open
};

export function hasTranslation(p) {
  return Boolean(p && p.tokens && p.tokens.target.length > 0);
}

// A server answer (what if, score, attribution) belongs to the translation
// with its serial: one made for an older translation is not drawn over a
// newer one.
export function isCurrent(value) {
  return Boolean(value && store.payload && value.serial === store.payload.serial);
}

export function publish(p) {
  // When the payload arrived and when every view had drawn it (in this
  // task: the views draw synchronously), for the browser benchmark.
  const arrived = performance.now();
  store.payload = p || null;
  store.cache.clear();
  const sel = store.sel;
  if (hasTranslation(p)) {
    const [N, H] = p.shape[sel.kind] || [1, 1];
    sel.layer = Math.min(sel.layer, N - 1);
    sel.head = Math.min(sel.head, H - 1);
  }
  sel.highlight = null;
  store.views = store.views.filter((v) => v.root.isConnected);
  for (const view of store.views) if (view.draw) safely(view, () => view.draw(store.payload));
  store.timing = { serial: p ? p.serial : null, arrived, drawn: performance.now() };
}

export function select(patch) {
  Object.assign(store.sel, patch);
  for (const view of store.views) {
    if (!view.onSelect) continue;
    if (isVisible(view.root)) safely(view, () => view.onSelect());
    else view.dirty = true;
  }
}

// One view failing to draw leaves the others drawn.
export function safely(view, fn) {
  try {
    fn();
    view.dirty = false;
  } catch (error) {
    console.error(`KMHA ${view.name}:`, error);
    empty(view.root, "This view could not be drawn.");
  }
}

// What a view last drew, as `data-drawn` of its root (tests wait on it).
export function drawn(view, serial) {
  view.root.dataset.drawn = String(serial === undefined ? "" : serial);
}
