/* The attention heatmaps: one head, every head of a layer, or every layer
 * and head of the model; clicking a token highlights its row or column,
 * and a highlighted row opens in "How a head works". */
import { el, empty, fill, showTab, widthOf } from "../core/dom.js";
import { heatmap, legend } from "../core/heatmap.js";
import { AXES, kindMax, kindName, matrix, maxOf } from "../core/matrix.js";
import { drawn, hasTranslation, safely, select, store } from "../core/store.js";
import { toolbar } from "../core/toolbar.js";

export function attentionView(root, emit) {
  return {
    relayout: true,
    draw() {
      this.onSelect();
    },
    onSelect() {
      const p = store.payload;
      if (!hasTranslation(p)) {
        empty(root, "Translate something to see its attention.");
        drawn(this, p ? p.serial : "");
        return;
      }
      const sel = store.sel;
      const draw = { head: oneHead, layer: oneLayer, model: wholeModel }[sel.mode];
      const { body, vmax } = draw(p, sel, widthOf(root));
      const scaleText = sel.shared ? "shared by all heads shown" : "each head scaled to its own maximum";
      fill(root,
        toolbar(p, { modes: true, scale: true }),
        legend(vmax > 0 ? vmax : 1, scaleText),
        body,
        downloads(emit)
      );
      drawn(this, p.serial);
    },
  };
}

// Tooltip lines of a cell of head (layer, head).
function describe(kind, m, layer, head) {
  const [rowAxis, colAxis] = AXES[kind];
  return (r, c, value) => [
    `layer ${layer}, head ${head}`,
    `query ${rowAxis} “${m.rowLabels[r]}” (${r}) → key ${colAxis} “${m.colLabels[c]}” (${c})`,
    `weight ${value.toFixed(4)}`,
  ];
}

// A token clicked: highlight its row or column (clicked again: none).
function toggleHighlight(axis, index) {
  const hl = store.sel.highlight;
  const same = hl && hl.axis === axis && hl.index === index;
  select({ highlight: same ? null : { axis, index } });
}

function oneHead(p, sel, width) {
  const m = matrix(p, sel.kind, sel.layer, sel.head, sel.merge);
  const vmax = sel.shared ? kindMax(p, sel.kind, sel.merge) : maxOf(m.data);
  const labelRoom = 130;
  // Cells as large as fit the width, and a long translation's rows about
  // one screen high.
  const fitWidth = (width - labelRoom - 20) / Math.max(m.cols, 1);
  const fitHeight = 640 / Math.max(m.rows, 1);
  const cell = Math.max(10, Math.min(38, Math.floor(Math.min(fitWidth, fitHeight))));
  const body = el(
    "div",
    { class: "kmha-body" },
    heatmap(m, {
      cell,
      vmax,
      labels: true,
      values: m.rows <= 15 && m.cols <= 15,
      highlight: sel.highlight,
      title: `${kindName(sel.kind)}, layer ${sel.layer}, head ${sel.head}`,
      onLabel: toggleHighlight,
      describe: describe(sel.kind, m, sel.layer, sel.head),
      className: "kmha-big",
    })
  );
  if (sel.highlight) body.append(highlightNote(m, sel.highlight));
  if (sel.highlight && sel.highlight.axis === "row" && !sel.merge) {
    const query = sel.highlight.index;
    body.append(
      el("button", {
        type: "button",
        class: "kmha-link",
        id: "open-head",
        text: "How is this row computed? →",
        onclick: () => openHead({ kind: sel.kind, layer: sel.layer, head: sel.head, query }),
      })
    );
  }
  return { body, vmax };
}

function oneLayer(p, sel, width) {
  const [, H] = p.shape[sel.kind];
  const vmax = sel.shared ? kindMax(p, sel.kind, sel.merge, sel.layer) : 0;
  const grid = el("div", { class: "kmha-grid" });
  const perRow = Math.min(H, width > 900 ? 4 : 2);
  for (let h = 0; h < H; h++) {
    const m = matrix(p, sel.kind, sel.layer, h, sel.merge);
    const cell = Math.max(4, Math.min(22, Math.floor((width / perRow - 110) / Math.max(m.cols, 1))));
    grid.append(
      heatmap(m, {
        cell,
        vmax: sel.shared ? vmax : maxOf(m.data),
        labels: m.cols <= 40,
        highlight: sel.highlight,
        title: `head ${h}`,
        onLabel: toggleHighlight,
        describe: describe(sel.kind, m, sel.layer, h),
        onCell: () => select({ head: h, mode: "head" }),
        className: h === sel.head ? "kmha-picked" : "",
      })
    );
  }
  return { body: el("div", { class: "kmha-body" }, grid), vmax };
}

function wholeModel(p, sel, width) {
  const [N, H] = p.shape[sel.kind];
  const vmax = sel.shared ? kindMax(p, sel.kind, sel.merge) : 0;
  const table = el("div", { class: "kmha-model", style: `grid-template-columns:auto repeat(${H}, auto)` });
  table.append(el("div"));
  for (let h = 0; h < H; h++) table.append(el("div", { class: "kmha-muted", text: `head ${h}` }));
  for (let n = 0; n < N; n++) {
    table.append(el("div", { class: "kmha-muted", text: `layer ${n}` }));
    for (let h = 0; h < H; h++) {
      const m = matrix(p, sel.kind, n, h, sel.merge);
      const cell = Math.max(2, Math.floor(Math.min(120, (width - 80) / H - 12) / Math.max(m.rows, m.cols, 1)));
      table.append(
        heatmap(m, {
          cell,
          vmax: sel.shared ? vmax : maxOf(m.data),
          labels: false,
          describe: describe(sel.kind, m, n, h),
          onCell: () => select({ layer: n, head: h, mode: "head" }),
          className: `kmha-thumb${n === sel.layer && h === sel.head ? " kmha-picked" : ""}`,
        })
      );
    }
  }
  return { body: el("div", { class: "kmha-body" }, table), vmax };
}

// Opens "How a head works" on one row (kind, layer, head, query).
function openHead(pick) {
  store.headPick = { ...pick };
  showTab("How a head works");
  for (const view of store.views) if (view.name === "head" && view.onSelect) safely(view, () => view.onSelect());
}

// The three keys (or queries) a highlighted row (or column) weighs most.
function highlightNote(m, hl) {
  const labels = hl.axis === "row" ? m.colLabels : m.rowLabels;
  const values = [];
  for (let i = 0; i < labels.length; i++) {
    const v = hl.axis === "row" ? m.data[hl.index * m.cols + i] : m.data[i * m.cols + hl.index];
    values.push([labels[i], v]);
  }
  values.sort((a, b) => b[1] - a[1]);
  const token = hl.axis === "row" ? m.rowLabels[hl.index] : m.colLabels[hl.index];
  const lead = hl.axis === "row" ? `“${token}” looks most at` : `Most attention to “${token}” comes from`;
  return el(
    "div",
    { class: "kmha-note", id: "highlight-note" },
    `${lead}: `,
    values.slice(0, 3).map(([t, v], i) => `${i ? ", " : ""}“${t}” ${v.toFixed(3)}`).join("")
  );
}

// The server writes the figure or the weights (explorer/exports.py).
function downloads(emit) {
  const sel = store.sel;
  const ask = (format) =>
    emit.export &&
    emit.export({ format, kind: sel.kind, layer: sel.layer, head: sel.head, merge: sel.merge, shared: sel.shared });
  return el(
    "div",
    { class: "kmha-toolbar kmha-downloads" },
    el("span", { class: "kmha-group-label", text: "Download" }),
    el("button", { type: "button", class: "kmha-btn", text: "this head (.png)", onclick: () => ask("png") }),
    el("button", { type: "button", class: "kmha-btn", text: "this head (.svg)", onclick: () => ask("svg") }),
    el("button", { type: "button", class: "kmha-btn", text: "all heads (.npz)", onclick: () => ask("npz") }),
    el("button", { type: "button", class: "kmha-btn", text: "all heads (.json)", onclick: () => ask("json") })
  );
}

