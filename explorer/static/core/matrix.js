/* The payload's attention as matrices: the three kinds, one head's weights,
 * pieces merged into words, and the maxima that colour scales share.
 *
 * The payload holds each kind's weights as integers (weight × scale) in
 * one base64 string of little-endian uint16; `headWeights` returns one
 * head's row-major map: [row * cols + col].
 */
import { store } from "./store.js";

export const KINDS = [
  ["cross", "cross-attention", "target → source"],
  ["encoder", "encoder self-attention", "source → source"],
  ["decoder", "decoder self-attention", "target → earlier target"],
];

// Query (row) and key (column) token lists of each kind.
export const AXES = {
  encoder: ["source", "source"],
  decoder: ["target", "decoder"],
  cross: ["target", "source"],
};

export function kindName(kind) {
  return KINDS.find(([k]) => k === kind)[1];
}

/* One head's weights: {data (Float32Array), rows, cols, rowLabels,
 * colLabels}; merged into words when `merge`. Cached until the next payload. */
export function matrix(p, kind, layer, head, merge) {
  const key = `${p.serial}/${kind}/${layer}/${head}/${merge ? 1 : 0}`;
  if (store.cache.has(key)) return store.cache.get(key);
  const [rowAxis, colAxis] = AXES[kind];
  let m = fromFlat(headWeights(p, kind, layer, head), p.scale, p.tokens[rowAxis], p.tokens[colAxis]);
  if (merge) m = mergeWords(m, p.words[rowAxis], p.words[colAxis]);
  store.cache.set(key, m);
  return m;
}

// Each kind's weights arrive as one base64 string of little-endian uint16
// (explorer/payload.py): decoded once per payload and kind, then every
// head is a view into it.
const decoded = new WeakMap();

export function headWeights(p, kind, layer, head) {
  let kinds = decoded.get(p.attention);
  if (!kinds) decoded.set(p.attention, (kinds = new Map()));
  let all = kinds.get(kind);
  if (!all) {
    const text = atob(p.attention[kind]);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    const view = new DataView(bytes.buffer);
    all = new Uint16Array(bytes.length / 2);
    for (let i = 0; i < all.length; i++) all[i] = view.getUint16(2 * i, true);
    kinds.set(kind, all);
  }
  const [N, H] = p.shape[kind];
  const size = N * H ? all.length / (N * H) : 0;
  const start = (layer * H + head) * size;
  return all.subarray(start, start + size);
}

export function fromFlat(flat, scale, rowLabels, colLabels) {
  return {
    data: Float32Array.from(flat, (v) => v / scale),
    rows: rowLabels.length,
    cols: colLabels.length,
    rowLabels,
    colLabels,
  };
}

// A word's key weight is the sum over its pieces, its query row the mean
// of its pieces' rows (rows still sum to 1), as keras_mha.plots does.
export function mergeWords(m, rowWords, colWords) {
  const R = rowWords.groups.length;
  const C = colWords.groups.length;
  const data = new Float32Array(R * C);
  rowWords.groups.forEach((rowGroup, r) => {
    colWords.groups.forEach((colGroup, c) => {
      let total = 0;
      for (const i of rowGroup) for (const j of colGroup) total += m.data[i * m.cols + j];
      data[r * C + c] = total / rowGroup.length;
    });
  });
  return { data, rows: R, cols: C, rowLabels: rowWords.labels, colLabels: colWords.labels };
}

export function maxOf(data) {
  let max = 0;
  for (const v of data) if (v > max) max = v;
  return max;
}

// The largest weight of every head of a kind (of one layer if given).
export function kindMax(p, kind, merge, layer) {
  const key = `${p.serial}/${kind}/max/${merge ? 1 : 0}/${layer}`;
  if (store.cache.has(key)) return store.cache.get(key);
  const [N, H] = p.shape[kind];
  let max = 0;
  for (let n = 0; n < N; n++) {
    if (layer !== undefined && layer !== n) continue;
    for (let h = 0; h < H; h++) max = Math.max(max, maxOf(matrix(p, kind, n, h, merge).data));
  }
  store.cache.set(key, max);
  return max;
}
