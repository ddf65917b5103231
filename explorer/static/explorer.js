/* The explorer's views, drawn in the browser: the entry module.
 *
 * The server sends one payload per translation (explorer/payload.py) to the
 * "summary" view; every other view draws from that payload and redraws on
 * the client when the visitor switches kind, layer, head or step, hovers or
 * clicks. Only a few actions ask the server: "whatif" (continue from a
 * candidate), "pick" (show another beam hypothesis), "trace" (the stages of
 * one head), "export" (a download); their answers come back as the value
 * of the view that asked, tagged with the serial of their translation.
 *
 * Each gr.HTML of the page imports this module and calls its mount(name,
 * element, props, watch, emitters) once, from its js_on_load
 * (explorer/views/__init__.py); the import resolves once the module and
 * everything it imports are loaded, so no mount runs early or is lost.
 * User text only ever reaches the page through textContent, never as HTML.
 *
 * core/   elements and SVG, colours, tooltip, controls, heatmap, the
 *         payload's matrices, the store and mounting
 * views/  one module per view, registered below under the name its
 *         gr.HTML mounts
 */
import { headWeights } from "./core/matrix.js";
import { mount, register } from "./core/mount.js";
import { publish, select, store } from "./core/store.js";
import { installTour } from "./tour.js";
import { alignmentView } from "./views/alignment.js";
import { attentionView } from "./views/attention.js";
import { attributionView } from "./views/attribution.js";
import { beamView } from "./views/beam.js";
import { headView } from "./views/head.js";
import { headsView } from "./views/heads.js";
import { linesView } from "./views/lines.js";
import { scoreView } from "./views/score.js";
import { stepsView } from "./views/steps.js";
import { summaryView } from "./views/summary.js";
import { whatifView } from "./views/whatif.js";

register({
  summary: summaryView,
  attention: attentionView,
  lines: linesView,
  steps: stepsView,
  whatif: whatifView,
  score: scoreView,
  beam: beamView,
  head: headView,
  attribution: attributionView,
  alignment: alignmentView,
  heads: headsView,
});
installTour();

// For the browser tests, benchmarks and the console.
window.KMHA = { mount, publish, select, store, headWeights };

export { mount };
