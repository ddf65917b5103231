/* Colours: viridis for attention weights, a red-to-green hue for
 * probabilities, one colour per head. */

// Viridis, as a polynomial fit (within 1/255 of matplotlib's table).
export const LUT = (() => {
  const c = [
    [0.2777, 0.0054, 0.3341], [0.105, 1.4046, 1.3846], [-0.3309, 0.2148, 0.0951],
    [-4.6342, -5.7991, -19.3324], [6.2283, 14.1799, 56.6906],
    [4.7764, -13.7451, -65.353], [-5.4355, 4.6459, 26.3124],
  ];
  const table = [];
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    const rgb = [0, 1, 2].map((k) => {
      let v = c[6][k];
      for (let j = 5; j >= 0; j--) v = v * t + c[j][k];
      return Math.round(255 * Math.min(1, Math.max(0, v)));
    });
    table.push(`rgb(${rgb[0]},${rgb[1]},${rgb[2]})`);
  }
  return table;
})();

export const HEAD_COLOURS = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

export function colour(value, vmax) {
  const t = vmax > 0 ? Math.min(1, Math.max(0, value / vmax)) : 0;
  return LUT[Math.round(t * 255)];
}

export function probColour(p) {
  return `hsla(${Math.round(120 * p)},70%,50%,0.35)`;
}
