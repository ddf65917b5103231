/* How a head works: the stages of one attention row, left to right (the
 * input, q, every key's score, the softmax, the weighted values, the
 * block's output). The controls come from the translation payload; the
 * numbers from the server ("trace"), asked only while the view is seen and
 * drawn only for the row and translation they belong to.
 */
import { el, empty, fill, isVisible, range } from "../core/dom.js";
import { heatmap } from "../core/heatmap.js";
import { kindName } from "../core/matrix.js";
import { drawn, hasTranslation, store } from "../core/store.js";
import { tooltip } from "../core/tooltip.js";

const VECTOR_COLUMNS = 32; // Cells per row of a drawn vector.
const VECTOR_CELL = [8, 15]; // px: a cell and its 1-px gap.

export function headView(root, emit) {
  let value = null;
  const pick = { kind: "cross", layer: 0, head: 0, query: 0 };
  const ask = () => emit.trace && emit.trace({ ...pick });
  const takeAsked = () => {
    // A row clicked in another view chooses what this one shows.
    if (store.headPick) {
      Object.assign(pick, store.headPick);
      store.headPick = null;
    }
  };
  // A vector as one canvas of small cells (orange positive, blue negative,
  // the colour's strength |v| / max |v|), 32 to a row; hovering a cell
  // says its value and how it was computed. (One element per vector, not
  // one per number: a stage card of 256 numbers drew as 256 elements.)
  const vector = (numbers, label, explain) => {
    const n = numbers.length;
    const cols = Math.max(1, Math.min(n, VECTOR_COLUMNS));
    const rows = Math.ceil(n / cols);
    const W = cols * VECTOR_CELL[0];
    const H = rows * VECTOR_CELL[1];
    const ratio = window.devicePixelRatio || 1;
    const canvas = el("canvas", {
      class: "kmha-vec",
      width: Math.round(W * ratio),
      height: Math.round(H * ratio),
      style: `width:${W}px;height:${H}px`,
      dataset: { size: String(n) },
    });
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const vmax = Math.max(1e-9, ...numbers.map((v) => Math.abs(v)));
    const [w, h] = VECTOR_CELL;
    numbers.forEach((v, i) => {
      const x = (i % cols) * w;
      const y = Math.floor(i / cols) * h;
      ctx.fillStyle = "rgba(0,0,0,0.08)";
      ctx.fillRect(x, y, w - 1, h - 1);
      ctx.fillStyle = `${v >= 0 ? "rgba(249,115,22," : "rgba(59,130,246,"}${(Math.abs(v) / vmax).toFixed(3)})`;
      ctx.fillRect(x + 1, y + 1, w - 3, h - 3);
    });
    canvas.addEventListener("mousemove", (event) => {
      const box = canvas.getBoundingClientRect();
      const i = Math.floor((event.clientY - box.top) / h) * cols + Math.floor((event.clientX - box.left) / w);
      if (i < 0 || i >= n) return tooltip(null, null);
      tooltip(event, [explain ? explain(i, numbers[i]) : `${label}[${i}] = ${numbers[i]}`]);
    });
    canvas.addEventListener("mouseleave", () => tooltip(null, null));
    return canvas;
  };
  return {
    relayout: true,
    redrawOnShow: true,
    setValue(v) {
      value = v;
      this.render();
    },
    draw() {
      this.render();
    },
    onSelect() {
      this.render();
    },
    controls(p) {
      const kinds = ["encoder", "decoder", "cross"];
      const [N, H] = p.shape[pick.kind];
      const queries = pick.kind === "encoder" ? p.tokens.source : p.tokens.decoder;
      pick.layer = Math.min(pick.layer, N - 1);
      pick.head = Math.min(pick.head, H - 1);
      pick.query = Math.min(pick.query, queries.length - 1);
      const select = (id, label, options, current, onChange) => {
        const node = el("select", { id, "aria-label": label });
        options.forEach(([val, text]) => node.append(el("option", { value: String(val), text, selected: val === current })));
        node.addEventListener("change", () => onChange(node.value));
        return el("label", { class: "kmha-control" }, `${label} `, node);
      };
      return el(
        "div",
        { class: "kmha-toolbar", id: "head-controls" },
        select("head-kind", "kind", kinds.map((k) => [k, kindName(k)]), pick.kind, (v) => { pick.kind = v; pick.query = 0; ask(); }),
        select("head-layer", "layer", range(N).map((i) => [i, String(i)]), pick.layer, (v) => { pick.layer = Number(v); ask(); }),
        select("head-head", "head", range(H).map((i) => [i, String(i)]), pick.head, (v) => { pick.head = Number(v); ask(); }),
        select("head-query", "query", queries.map((t, i) => [i, `${i}: ${t}`]), pick.query, (v) => { pick.query = Number(v); ask(); })
      );
    },
    render() {
      const p = store.payload;
      takeAsked();
      if (!hasTranslation(p)) {
        empty(root, "Translate something to see how one head computes its weights.");
        drawn(this, p ? p.serial : "");
        return;
      }
      const fresh = value && value.serial === p.serial && value.kind === pick.kind && value.layer === pick.layer && value.head === pick.head && value.query === pick.query;
      if (!fresh) {
        // Ask the server only for a view someone looks at: a hidden tab
        // asks when it is shown (its width changes, `relayout`).
        if (!isVisible(root)) return;
        fill(root, this.controls(p), el("div", { class: "kmha-muted", text: "Computing the stages…" }));
        if (!value || value.serial !== p.serial || !this.asked || this.asked !== `${p.serial}/${pick.kind}/${pick.layer}/${pick.head}/${pick.query}`) {
          this.asked = `${p.serial}/${pick.kind}/${pick.layer}/${pick.head}/${pick.query}`;
          ask();
        }
        return;
      }
      const v = value;
      const labels = Object.fromEntries(v.stages.map((s) => [s.key, s]));
      const card = (key, body) => {
        const s = labels[key];
        return el(
          "div",
          { class: "kmha-stage", dataset: { stage: key } },
          el("div", { class: "kmha-stage-label", text: s.label }),
          el("div", { class: "kmha-formula", text: s.formula }),
          el("div", { class: "kmha-shape", text: s.shape }),
          body
        );
      };
      const keys = v.key_tokens;
      const rows = keys.map((token, j) => {
        const masked = !v.mask[j];
        return el(
          "tr",
          { class: masked ? "masked" : "", dataset: { key: String(j) } },
          el("th", { text: token }),
          el("td", {}, vector(v.products[j], "q·k", (d, x) => `q[${d}] × k_${j}[${d}] = ${v.q[d]} × ${v.keys[j][d]} = ${x}`)),
          el("td", { class: "num", text: v.dots[j].toFixed(3), title: `Σ_d q_d k_${j}d = ${v.dots[j]}` }),
          el("td", { class: "num", text: v.scaled[j].toFixed(3), title: `${v.dots[j]} / √${v.d_k} = ${v.dots[j]} / ${v.sqrt_d_k} = ${v.scaled[j]}` }),
          el("td", { class: "num", text: masked ? "−∞" : "✓", title: masked ? "masked: padding or a later position" : "visible" }),
          el(
            "td",
            { class: "num kmha-weight", dataset: { weight: String(v.weights[j]) }, title: `exp(${v.scaled[j].toFixed(4)}) / Σ exp = ${v.weights[j]}` },
            el("span", { class: "kmha-bar" }, el("span", { style: `width:${(100 * v.weights[j]).toFixed(1)}%` })),
            ` ${v.weights[j].toFixed(3)}`
          )
        );
      });
      const table = el(
        "table",
        { class: "kmha-head-table", id: "head-keys" },
        el(
          "tr",
          {},
          el("th", { text: "key" }),
          el("th", { text: `${labels.products.formula} ${labels.products.shape}` }),
          el("th", { text: labels.dots.formula }),
          el("th", { text: labels.scaled.formula }),
          el("th", { text: labels.mask.formula }),
          el("th", { text: `${labels.weights.formula} (the attention row)` })
        ),
        rows
      );
      const sum = v.weights.reduce((a, b) => a + b, 0);
      const query = v.produces ? `${v.query_token} (the input that produces ${v.produces})` : v.query_token;
      fill(
        root,
        this.controls(p),
        el("div", { class: "kmha-note", text: `${kindName(v.kind)}, layer ${v.layer}, head ${v.head}, query ${query}. d_k = ${v.d_k}, ${v.num_heads} heads. The weights sum to ${sum.toFixed(4)}.` }),
        el("h4", { text: "The model's input: token vector + position vector" }),
        el(
          "div",
          { class: "kmha-stages" },
          el(
            "div",
            { class: "kmha-stage", dataset: { stage: "positions" } },
            el("div", { class: "kmha-stage-label", text: "position vectors" }),
            el("div", { class: "kmha-formula", text: "PE(p, 2i) = sin(p / 10000^(2i/D)), PE(p, 2i+1 in the second half) = cos(…)" }),
            el("div", { class: "kmha-shape", text: `(${v.positions.length}, ${v.x.length}): one row per position` }),
            heatmap(
              {
                rows: v.positions.length,
                cols: v.x.length,
                data: Float32Array.from(v.positions.flat().map((x) => (x + 1) / 2)),
                rowLabels: v.positions.map((_, i) => String(i)),
                colLabels: [],
              },
              { cell: Math.max(1, Math.min(4, Math.floor(400 / v.x.length))), vmax: 1, describe: (r, c, x) => [`position ${r}, dimension ${c}`, `value ${(2 * x - 1).toFixed(3)}`] }
            )
          ),
          el(
            "div",
            { class: "kmha-stage", dataset: { stage: "embedding" } },
            el("div", { class: "kmha-stage-label", text: `the query piece “${v.query_token}”` }),
            el("div", { class: "kmha-formula", text: "token vector = E[id] · √D" }),
            vector(v.token_vector, "token"),
            el("div", { class: "kmha-formula", text: `+ position vector PE(${v.query})` }),
            vector(v.position_vector, "position"),
            el("div", { class: "kmha-formula", text: v.layer === 0 && v.kind !== "cross" ? "= x below (layer 0)" : "= the model's input at this position" })
          )
        ),
        el(
          "div",
          { class: "kmha-stages" },
          card("x", vector(v.x, "x")),
          card("normalized", vector(v.normalized, "x̂")),
          card("q", vector(v.q, "q"))
        ),
        el("h4", { text: `Every key (${keys.length}): ${labels.keys.formula}, then the scores` }),
        table,
        el(
          "div",
          { class: "kmha-stages" },
          card("head_output", vector(v.head_output, "head", (d, x) => `Σ_j w_j v_j[${d}] = ${x}`)),
          card("concat", vector(v.concat, "concat", (i, x) => `head ${Math.floor(i / v.head_output.length)}, dimension ${i % v.head_output.length}: ${x}`)),
          card("output", vector(v.output, "output")),
          card("residual", vector(v.residual, "x + output", (d, x) => `${v.x[d]} + ${v.output[d]} = ${x}`)),
          card("block_output", vector(v.block_output, "block output"))
        )
      );
      drawn(this, String(p.serial));
    },
  };
}
