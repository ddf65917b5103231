/* Step by step: the translation replayed piece by piece, with each step's
 * candidates (click one: "what if"), what each decoder layer would have
 * said, and every head's attention row at that step.
 *
 * The player stops when its view is hidden (another tab), replaced (Gradio
 * rendered the component again) or a new translation arrives.
 */
import { colour } from "../core/colour.js";
import { el, empty, fill, isVisible } from "../core/dom.js";
import { AXES, headWeights } from "../core/matrix.js";
import { drawn, hasTranslation, store } from "../core/store.js";

const PLAY_INTERVAL_MS = 900;

export function stepsView(root, emit) {
  let step = 0;
  let timer = null;
  let serial = null;
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  const view = {
    relayout: true,
    draw(p) {
      stop();
      if (!p || p.serial !== serial) step = 0;
      serial = p ? p.serial : null;
      render();
    },
  };
  const go = (t) => {
    step = Math.max(0, Math.min(store.payload.tokens.target.length - 1, t));
    render();
  };
  const play = () => {
    const T = store.payload.tokens.target.length;
    if (step >= T - 1) step = 0;
    timer = setInterval(() => {
      const gone = !isVisible(root) || !store.payload || store.payload.serial !== serial;
      if (gone || step >= T - 1) {
        stop();
        render();
      } else {
        go(step + 1);
      }
    }, PLAY_INTERVAL_MS);
    render();
  };
  const render = () => {
    const p = store.payload;
    if (!hasTranslation(p)) {
      stop();
      empty(root, "Translate something to replay it step by step.");
      drawn(view, p ? p.serial : "");
      return;
    }
    step = Math.min(step, p.tokens.target.length - 1);
    const lens = layerPredictions(p, step);
    fill(root,
      controls(p, step, timer !== null, {
        go: (t) => {
          stop();
          go(t);
        },
        toggle: () => {
          if (timer) {
            stop();
            render();
          } else {
            play();
          }
        },
      }),
      el("h4", { text: "Output so far" }),
      sofar(p, step),
      el("h4", { text: `Candidates for piece ${step + 1}` }),
      step < p.prefix_length
        ? el("div", { class: "kmha-note", text: "This piece was forced (the prefix); the candidates are what the model would have chosen from." })
        : null,
      candidates(p, step, (piece) => {
        if (!emit.whatif) return;
        stop();
        emit.whatif({ step, piece });
      }),
      lens ? el("h4", { text: "What each decoder layer would say here (its output through the final norm and output projection)" }) : null,
      lens,
      el("h4", { text: "Cross-attention of every head at this step (query: the piece being chosen)" }),
      stepRows(p, "cross", step, p.tokens.source),
      el("h4", { text: "Decoder self-attention at this step (keys: the decoder's inputs so far)" }),
      stepRows(p, "decoder", step, p.tokens.decoder.slice(0, step + 1))
    );
    drawn(view, p.serial);
    root.dataset.step = String(step);
  };
  return view;
}

// Previous, play / pause, next and a slider; on.go(t), on.toggle().
function controls(p, step, playing, on) {
  const T = p.tokens.target.length;
  const slider = el("input", { type: "range", min: 0, max: T - 1, value: step, id: "step-slider", "aria-label": "step" });
  slider.addEventListener("input", () => on.go(Number(slider.value)));
  return el(
    "div",
    { class: "kmha-toolbar kmha-steps-bar" },
    el("button", { type: "button", class: "kmha-btn", id: "step-prev", text: "◀", title: "previous step", onclick: () => on.go(step - 1) }),
    el("button", { type: "button", class: "kmha-btn", id: "step-play", text: playing ? "⏸ pause" : "▶ play", onclick: on.toggle }),
    el("button", { type: "button", class: "kmha-btn", id: "step-next", text: "▶|", title: "next step", onclick: () => on.go(step + 1) }),
    slider,
    el("span", { id: "step-label", text: `step ${step + 1} of ${T}` })
  );
}

function sofar(p, step) {
  const pieces = p.tokens.target;
  return el(
    "div",
    { class: "kmha-chips", id: "step-output" },
    pieces.slice(0, step).map((piece, i) =>
      el("span", { class: i < p.prefix_length ? "kmha-chip forced" : "kmha-chip", text: piece, dataset: { piece } })
    ),
    el("span", { class: "kmha-chip now", title: "chosen at this step", text: pieces[step], dataset: { piece: pieces[step] } })
  );
}

// The pieces the model weighed at `step`; onWhatIf(piece) for another one.
function candidates(p, step, onWhatIf) {
  const alternatives = p.alternatives[step] || [];
  const chosen = p.tokens.target[step];
  const rows = alternatives.length ? alternatives : [[chosen, p.probs[step]]];
  const list = el(
    "div",
    { class: "kmha-candidates", id: "step-candidates" },
    rows.map(([piece, prob]) => {
      const isChosen = piece === chosen;
      return el(
        "button",
        {
          type: "button",
          class: isChosen ? "kmha-candidate chosen" : "kmha-candidate",
          title: isChosen ? "the piece the translation took" : "continue the translation from this piece",
          dataset: { piece },
          onclick: () => {
            if (!isChosen) onWhatIf(piece);
          },
        },
        el("span", { class: "kmha-candidate-piece", text: piece }),
        el("span", { class: "kmha-bar" }, el("span", { style: `width:${(100 * prob).toFixed(1)}%` })),
        el("span", { class: "kmha-candidate-prob", text: `${(100 * prob).toFixed(1)} %` }),
        el("span", { class: "kmha-candidate-mark", text: isChosen ? "✓ chosen" : "what if?" })
      );
    })
  );
  if (!alternatives.length) list.append(el("div", { class: "kmha-muted", text: "No candidates were recorded for this translation." }));
  return list;
}

// Logit lens: each decoder layer's output read through the final
// normalisation and the output projection (null if not recorded).
function layerPredictions(p, step) {
  const layers = p.layer_predictions || [];
  if (!layers.length) return null;
  const chosen = p.tokens.target[step];
  return el(
    "table",
    { class: "kmha-lens", id: "step-layers" },
    layers.map((steps, layer) =>
      el(
        "tr",
        { dataset: { layer: String(layer) } },
        el("th", { text: layer === layers.length - 1 ? `layer ${layer} (the output)` : `layer ${layer}` }),
        (steps[step] || []).map(([piece, prob]) =>
          el("td", { class: piece === chosen ? "chosen" : "", text: `${piece} ${(100 * prob).toFixed(1)} %` })
        )
      )
    )
  );
}

/* Row `step` of every head of every layer, as a table of coloured cells. */
function stepRows(p, kind, step, keys) {
  const [N, H] = p.shape[kind];
  const cols = p.tokens[AXES[kind][1]].length;
  const table = el("table", { class: "kmha-steprows", dataset: { kind } });
  const head = el("tr", {}, el("th"));
  keys.forEach((k) => head.append(el("th", { class: "kmha-key" }, el("span", { text: k }))));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  const rows = [];
  let max = 1e-6;
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < H; h++) {
      const flat = headWeights(p, kind, n, h);
      const values = keys.map((_, c) => flat[step * cols + c] / p.scale);
      max = Math.max(max, ...values);
      rows.push([n, h, values]);
    }
  }
  // One colour scale for the whole table, so that heads compare.
  for (const [n, h, values] of rows) {
    const tr = el("tr", {}, el("th", { text: `L${n} H${h}` }));
    values.forEach((v, c) =>
      tr.append(
        el("td", {
          style: `background:${colour(v, max)}`,
          title: `layer ${n}, head ${h}: “${keys[c]}” ${v.toFixed(4)}`,
        })
      )
    );
    body.append(tr);
  }
  table.append(body);
  return el("div", { class: "kmha-scroll" }, table);
}
