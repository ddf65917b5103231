/* The selectors the attention views share: kind, layer, head, what to show,
 * the colour scale and merging pieces into words. A choice goes to the
 * store's selection (select), which redraws every view that follows it. */
import { buttons, checkbox } from "./controls.js";
import { el, range } from "./dom.js";
import { KINDS } from "./matrix.js";
import { select, store } from "./store.js";

// options: heads (default true), modes, scale.
export function toolbar(p, options) {
  const sel = store.sel;
  const [N, H] = p.shape[sel.kind];
  const bar = el("div", { class: "kmha-toolbar" });
  bar.append(
    buttons(
      "Attention",
      KINDS,
      sel.kind,
      (kind) => {
        const [n, h] = p.shape[kind];
        select({ kind, layer: Math.min(sel.layer, n - 1), head: Math.min(sel.head, h - 1), highlight: null });
      },
      "kinds"
    ),
    buttons("Layer", range(N).map((n) => [n, `L${n}`]), sel.layer, (layer) => select({ layer }), "layers")
  );
  if (options.heads !== false) {
    bar.append(buttons("Head", range(H).map((h) => [h, `H${h}`]), sel.head, (head) => select({ head }), "heads"));
  }
  if (options.modes) {
    bar.append(
      buttons(
        "Show",
        [
          ["head", "one head"],
          ["layer", "all heads of the layer"],
          ["model", "all layers × heads"],
        ],
        sel.mode,
        (mode) => select({ mode }),
        "modes"
      )
    );
  }
  const checks = el("div", { class: "kmha-group" });
  if (options.scale) {
    checks.append(checkbox("shared colour scale", sel.shared, (shared) => select({ shared }), "kmha-shared"));
  }
  checks.append(checkbox("merge pieces into words", sel.merge, (merge) => select({ merge, highlight: null }), "kmha-merge"));
  bar.append(checks);
  return bar;
}
