/* The heatmap: weights as canvas cells, tokens as HTML labels (text, never
 * HTML), a tooltip per cell; and the colour legend beside it. */
import { LUT, colour } from "./colour.js";
import { el } from "./dom.js";
import { maxOf } from "./matrix.js";
import { tooltip } from "./tooltip.js";

/* m: a matrix (matrix.js). Returns the node.
 * opts: cell (px), vmax, labels, values, highlight, title, onLabel(axis, i),
 * onCell(r, c), describe(r, c) -> tooltip lines, className. */
export function heatmap(m, opts) {
  const cell = opts.cell;
  const W = Math.max(1, m.cols * cell);
  const H = Math.max(1, m.rows * cell);
  const ratio = window.devicePixelRatio || 1;
  const canvas = el("canvas", {
    class: "kmha-cells",
    width: Math.round(W * ratio),
    height: Math.round(H * ratio),
    style: `width:${W}px;height:${H}px`,
  });
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const vmax = opts.vmax > 0 ? opts.vmax : maxOf(m.data) || 1;
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      ctx.fillStyle = colour(m.data[r * m.cols + c], vmax);
      ctx.fillRect(c * cell, r * cell, cell + 0.5, cell + 0.5);
    }
  }
  if (opts.values && cell >= 26) {
    ctx.font = `${Math.min(11, cell / 2.6)}px sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let r = 0; r < m.rows; r++) {
      for (let c = 0; c < m.cols; c++) {
        const v = m.data[r * m.cols + c];
        ctx.fillStyle = v / vmax > 0.6 ? "#000" : "#fff";
        ctx.fillText(v.toFixed(2), c * cell + cell / 2, r * cell + cell / 2);
      }
    }
  }
  const hl = opts.highlight;
  if (hl) {
    ctx.strokeStyle = "#ff2d55";
    ctx.lineWidth = 2;
    if (hl.axis === "row" && hl.index < m.rows) ctx.strokeRect(1, hl.index * cell + 1, W - 2, cell - 2);
    if (hl.axis === "col" && hl.index < m.cols) ctx.strokeRect(hl.index * cell + 1, 1, cell - 2, H - 2);
  }
  const node = el("div", { class: `kmha-hm ${opts.className || ""}` });
  if (opts.title) node.append(el("div", { class: "kmha-hm-title", text: opts.title }));
  let rowNodes = [];
  let colNodes = [];
  if (opts.labels) {
    const size = Math.max(9, Math.min(13, cell * 0.62));
    const grid = el("div", {
      class: "kmha-hm-grid",
      style: `grid-template-columns:auto ${W}px;grid-template-rows:auto ${H}px;font-size:${size}px`,
    });
    const label = (axis, i, text) => {
      const isHl = hl && hl.axis === axis && hl.index === i;
      const props = {
        class: `kmha-label ${axis}${isHl ? " hl" : ""}`,
        title: text,
        text,
        dataset: { index: String(i) },
        style: axis === "row" ? `height:${cell}px` : `width:${cell}px`,
      };
      if (opts.onLabel) props.onclick = () => opts.onLabel(axis, i);
      return el("div", props);
    };
    colNodes = m.colLabels.map((t, i) => label("col", i, t));
    rowNodes = m.rowLabels.map((t, i) => label("row", i, t));
    grid.append(
      el("div", { class: "kmha-corner" }),
      el("div", { class: "kmha-cols" }, colNodes),
      el("div", { class: "kmha-rows" }, rowNodes),
      canvas
    );
    node.append(grid);
  } else {
    node.append(canvas);
  }
  let hovered = null;
  const unhover = () => {
    if (!hovered) return;
    rowNodes[hovered[0]] && rowNodes[hovered[0]].classList.remove("hover");
    colNodes[hovered[1]] && colNodes[hovered[1]].classList.remove("hover");
    hovered = null;
  };
  // The cell under the pointer, as [row, col].
  const cellAt = (event) => {
    const box = canvas.getBoundingClientRect();
    return [
      Math.floor(((event.clientY - box.top) / box.height) * m.rows),
      Math.floor(((event.clientX - box.left) / box.width) * m.cols),
    ];
  };
  canvas.addEventListener("mousemove", (event) => {
    const [r, c] = cellAt(event);
    if (r < 0 || c < 0 || r >= m.rows || c >= m.cols) return;
    if (!hovered || hovered[0] !== r || hovered[1] !== c) {
      unhover();
      hovered = [r, c];
      rowNodes[r] && rowNodes[r].classList.add("hover");
      colNodes[c] && colNodes[c].classList.add("hover");
    }
    const value = m.data[r * m.cols + c];
    const lines = opts.describe
      ? opts.describe(r, c, value)
      : [`${m.rowLabels[r]} → ${m.colLabels[c]}`, `weight ${value.toFixed(4)}`];
    tooltip(event, lines);
  });
  canvas.addEventListener("mouseleave", () => {
    unhover();
    tooltip(null, null);
  });
  if (opts.onCell) {
    canvas.addEventListener("click", (event) => opts.onCell(...cellAt(event)));
  }
  return node;
}

export function legend(vmax, text) {
  const bar = el("canvas", { class: "kmha-legend-bar", width: 160, height: 10 });
  const ctx = bar.getContext("2d");
  for (let x = 0; x < 160; x++) {
    ctx.fillStyle = LUT[Math.round((x / 159) * 255)];
    ctx.fillRect(x, 0, 1, 10);
  }
  return el(
    "div",
    { class: "kmha-legend" },
    el("span", { text: "0" }),
    bar,
    el("span", { text: vmax.toFixed(2) }),
    el("span", { class: "kmha-muted", text })
  );
}
