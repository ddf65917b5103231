/* Token lines (bertviz's head view): queries left, keys right, one line per
 * weight of every head of the layer, coloured by head.
 *
 * The lines are built once per drawing (a new payload or selection);
 * hovering a token and switching heads on and off only show, hide and
 * fade the lines already there.
 */
import { HEAD_COLOURS } from "../core/colour.js";
import { el, empty, fill, range, svg, widthOf } from "../core/dom.js";
import { AXES, matrix } from "../core/matrix.js";
import { drawn, hasTranslation, store } from "../core/store.js";
import { toolbar } from "../core/toolbar.js";

const ROW_HEIGHT = 22;
const LABEL_WIDTH = 150;
const MIN_WEIGHT = 0.02; // Lighter weights draw no line.

export function linesView(root) {
  const hidden = new Set(); // Heads switched off, kept across selections.
  return {
    relayout: true,
    draw() {
      hidden.clear();
      this.onSelect();
    },
    onSelect() {
      const p = store.payload;
      if (!hasTranslation(p)) {
        empty(root, "Translate something to see its attention as lines.");
        drawn(this, p ? p.serial : "");
        return;
      }
      const sel = store.sel;
      const [, H] = p.shape[sel.kind];
      const heads = range(H).map((h) => matrix(p, sel.kind, sel.layer, h, sel.merge));
      const drawing = lines(heads, AXES[sel.kind], widthOf(root), hidden);
      const bar = toolbar(p, { heads: false });
      bar.append(headSwitches(H, hidden, drawing));
      fill(root, bar, el("div", { class: "kmha-scroll" }, drawing));
      drawn(this, p.serial);
    },
  };
}

function lines(heads, [rowAxis, colAxis], available, hidden) {
  const m0 = heads[0];
  const width = Math.min(760, Math.max(420, available - 20));
  const height = Math.max(m0.rows, m0.cols) * ROW_HEIGHT + 30;
  const leftX = LABEL_WIDTH;
  const rightX = width - LABEL_WIDTH;
  const y = (i) => 24 + i * ROW_HEIGHT + ROW_HEIGHT / 2;
  const drawing = svg("svg", { class: "kmha-lines", width, height, viewBox: `0 0 ${width} ${height}` });
  drawing.append(
    svg("text", { x: leftX - 8, y: 12, "text-anchor": "end", class: "kmha-axis", text: `queries (${rowAxis})` }),
    svg("text", { x: rightX + 8, y: 12, class: "kmha-axis", text: `keys (${colAxis})` })
  );
  // One group per head, so that a head switches on and off at once.
  const all = []; // [line, weight] of every head
  const groups = heads.map((m, h) => {
    const group = svg("g", { "data-head": h, display: hidden.has(h) ? "none" : null });
    for (let r = 0; r < m.rows; r++) {
      for (let c = 0; c < m.cols; c++) {
        const w = m.data[r * m.cols + c];
        if (w < MIN_WEIGHT) continue;
        const line = svg("line", {
          x1: leftX,
          y1: y(r),
          x2: rightX,
          y2: y(c),
          stroke: HEAD_COLOURS[h % HEAD_COLOURS.length],
          "stroke-width": (1 + 3 * w).toFixed(2),
          "data-row": r,
          "data-col": c,
        });
        all.push([line, w]);
        group.append(line);
      }
    }
    return group;
  });
  // Hovering a token shows its lines only, a little stronger.
  const focus = (side, index) => {
    const attr = side === "left" ? "data-row" : "data-col";
    for (const [line, w] of all) {
      const shown = side === null || line.getAttribute(attr) === String(index);
      line.setAttribute("display", shown ? "inline" : "none");
      line.setAttribute("stroke-opacity", Math.min(1, w * (side ? 1.2 : 0.9)).toFixed(3));
    }
  };
  focus(null);
  drawing.append(...groups);
  const token = (side, i, text) => {
    const node = svg("text", {
      x: side === "left" ? leftX - 8 : rightX + 8,
      y: y(i) + 4,
      "text-anchor": side === "left" ? "end" : "start",
      class: "kmha-token",
      "data-side": side,
      "data-index": i,
      text,
    });
    node.addEventListener("mouseenter", () => {
      node.classList.add("on");
      focus(side, i);
    });
    node.addEventListener("mouseleave", () => {
      node.classList.remove("on");
      focus(null);
    });
    return node;
  };
  drawing.append(
    ...m0.rowLabels.map((t, i) => token("left", i, t)),
    ...m0.colLabels.map((t, i) => token("right", i, t))
  );
  return drawing;
}

// A button per head that shows or hides its lines.
function headSwitches(H, hidden, drawing) {
  return el(
    "div",
    { class: "kmha-group" },
    el("span", { class: "kmha-group-label", text: "Heads" }),
    range(H).map((h) => {
      const button = el("button", {
        type: "button",
        class: hidden.has(h) ? "kmha-btn kmha-swatch off" : "kmha-btn kmha-swatch",
        style: `--swatch:${HEAD_COLOURS[h % HEAD_COLOURS.length]}`,
        title: "show or hide this head",
        "aria-pressed": hidden.has(h) ? "false" : "true",
        text: `H${h}`,
      });
      button.addEventListener("click", () => {
        if (hidden.has(h)) hidden.delete(h);
        else hidden.add(h);
        const off = hidden.has(h);
        button.classList.toggle("off", off);
        button.setAttribute("aria-pressed", off ? "false" : "true");
        drawing.querySelector(`g[data-head="${h}"]`).setAttribute("display", off ? "none" : "inline");
      });
      return button;
    })
  );
}
