// digitnet's page: draw a digit, send it to POST v1/explain of every network the server serves (in parallel),
// and draw one network's answer as 3Blue1Brown draws it: the input as the model saw it, two layers of 16
// neurons lit by activation, ten outputs, and the strongest connections coloured by contribution (weight x
// activation). With several networks, a row per network gives its answer, and a switch chooses the one drawn:
// the picture is redrawn from that network's last answer, without asking again. Each network's weights come
// once from GET v1/network; the READY networks from POST v2/repository/index.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const net = document.getElementById("net");
const answer = document.getElementById("answer");
const status = document.getElementById("status");
const confidence = document.getElementById("confidence");
const pattern = document.getElementById("pattern");
const caption = document.getElementById("pattern-caption");
const maths = document.getElementById("neuron-maths");
const about = document.getElementById("about");
const metadata = document.getElementById("metadata");
const rows = document.getElementById("model-rows");
const differences = document.getElementById("differences");

// Each network: its name, its weights (GET v1/network: {name, activation, weights: [W1 784x16, W2 16x16,
// W3 16x10], biases, sha256, accuracy, strongest: {layer: count}}), its answer to the image shown, the problem
// that kept it from answering, and its row. Until the weights come: the default network, by no name.
let models = [{ name: "", network: null, result: null, problem: "", row: null }];
let pictured = models[0];  // the network the picture shows
let network = null;        // its weights
let inFlight = false; // one image at a time (each network asked about it at once) ...
let pending = null;   // ... and the latest image waiting behind it
let current = null;   // the image last sent (drawn, example or upload): a new threshold asks about it again
let generation = 0;   // bumped by Clear: an answer about an image from before it is not shown
let timer = 0;
let drawing = false;
let shown = null;     // the answer the picture shows (REST before any)
let chosen = null;    // [layer, neuron] last hovered or focused: highlighted, its numbers in the panel
const resting = { answer: answer.textContent, caption: caption.textContent, maths: maths.textContent, status: "" };  // as the page first shows them

function clearPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  pen.beginPath();
  pen.moveTo(x, y);
  pen.lineTo(x + 0.1, y);
  pen.stroke();
  event.preventDefault();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const [x, y] = point(event);
  pen.lineTo(x, y);
  pen.stroke();
  schedule();  // live: debounced, one request in flight
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => {
    if (!drawing) return;
    drawing = false;
    schedule(0);
  });
}

function setPen() {
  pen.strokeStyle = "#fff";
  pen.lineWidth = 20;
  pen.lineCap = "round";
  pen.lineJoin = "round";
}

function schedule(delay = 150) {
  clearTimeout(timer);
  const asked = generation;
  timer = setTimeout(() => pad.toBlob((blob) => send(blob, asked), "image/png"), delay);
}

async function send(image, asked = generation) {
  if (asked !== generation) return;  // an image from before a Clear
  current = image;
  if (inFlight) { pending = image; return; }
  inFlight = true;
  try {
    const trace = randomHex(16);  // one trace per image sent: every network's answer to it, side by side
    await Promise.all(models.map((model) => ask(model, image, asked, trace)));  // every network at once
  } finally {
    inFlight = false;
    if (pending) { const next = pending; pending = null; send(next); }
  }
}

function randomHex(bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function traceparent(trace) {
  // W3C trace context: the server's spans of this request join the image's trace (sampled: a person's pace).
  return `00-${trace}-${randomHex(8)}-01`;
}

async function ask(model, image, asked, trace = randomHex(16)) {
  // One network's answer about the image: its row says it, and the picture shows it if it is the one drawn.
  const which = model.name ? `model=${encodeURIComponent(model.name)}&` : "";
  let result = null;
  let problem = "";
  try {
    const response = await fetch(`v1/explain?${which}min_confidence=${confidence.value}`,
                                 { method: "POST", body: image, headers: { "Content-Type": image.type || "application/octet-stream", traceparent: traceparent(trace) } });
    const body = await response.json();
    if (!response.ok) problem = body.error || `the server answered ${response.status}`;
    if (response.ok || body.status === "error") result = body;  // an image it cannot read is an answer too
  } catch (error) {
    problem = `cannot reach the server: ${error.message}`;
  }
  if (asked !== generation) return;  // the pad was cleared while the server worked: this answer is about nothing shown
  model.result = result;
  model.problem = problem;
  showRow(model);
  if (model === pictured) showPictured();
}

function showPictured(switched = false) {
  // The pictured network's answer, its problem in the status line; a network that could not answer leaves the
  // picture as it was, unless the switch just chose it (then the picture is at rest: it has nothing to show).
  status.textContent = pictured.problem || resting.status;
  if (pictured.result) {
    show(pictured.result);
  } else if (switched) {
    answer.textContent = current ? `The ${pictured.name} network has no answer.` : resting.answer;
    answer.dataset.label = answer.dataset.status = "";
    drawNetwork(REST);
  }
}

function saying(who, result) {
  // "<who>says 7 (98% sure)", the digit stressed: the answer, and each network's row.
  const label = Object.assign(document.createElement("strong"), { textContent: String(result.label) });
  return [`${who}says `, label, ` (${(100 * result.confidence).toFixed(0)}% sure)`];
}

function show(result) {
  if (result.status === "digit") {
    answer.replaceChildren(...saying(models.length > 1 ? `The ${pictured.name} network ` : "The network ", result));
  } else if (result.status === "unknown") {
    answer.textContent = `No answer: ${result.reason}`;
  } else {
    answer.textContent = `This image cannot be read: ${result.error}`;
  }
  answer.dataset.label = result.status === "digit" ? String(result.label) : "";
  answer.dataset.status = result.status;
  if (result.input) drawNetwork(result);
}

function el(name, attributes, parent = net) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  parent.appendChild(node);
  return node;
}

function column(count, top, bottom) {
  const step = (bottom - top) / count;
  return Array.from({ length: count }, (_, i) => top + step * (i + 0.5));
}

function grey(value) {
  const level = Math.round(255 * Math.max(0, Math.min(1, value)));
  return `rgb(${level},${level},${level})`;
}

function inputImage(pixels) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 28;
  const image = canvas.getContext("2d").createImageData(28, 28);
  pixels.forEach((value, i) => {
    const level = Math.round(255 * value);
    image.data.set([level, level, level, 255], 4 * i);
  });
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas.toDataURL();
}

// Two layouts of one picture: beside the input on a wide screen; on a phone the input on top and the layers
// below it, tall, so that the picture takes the full width and each neuron is a tap target of at least 24 px.
const WIDE = { width: 760, height: 430, input: { x: 20, y: 75, size: 280 }, xs: [330, 500, 670],
               hidden: [10, 420], outputs: [30, 400], r: [10, 10, 13], labels: 428 };
const NARROW = { width: 360, height: 800, input: { x: 90, y: 28, size: 180 }, xs: [50, 170, 290],
                 hidden: [240, 760], outputs: [260, 740], r: [13, 13, 13], labels: 790 };
const phone = window.matchMedia("(max-width: 600px)");
const zeros = (count) => new Array(count).fill(0);
// The network before any digit: every neuron drawn, unlit, and no connection lit (nothing flows through them).
const REST = { status: "rest", input: zeros(784), hidden1: zeros(16), hidden2: zeros(16), probabilities: [] };

function drawNetwork(result) {
  shown = result;
  const L = phone.matches ? NARROW : WIDE;
  net.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
  net.replaceChildren();
  const atRest = result === REST;
  const { x: left, y: top, size } = L.input;
  const layers = [result.hidden1, result.hidden2, result.probabilities.length ? result.probabilities : zeros(10)];
  const ys = [column(16, ...L.hidden), column(16, ...L.hidden), column(10, ...L.outputs)];
  const xs = L.xs;
  const pixel = (i) => [left + (i % 28 + 0.5) * size / 28, top + (Math.floor(i / 28) + 0.5) * size / 28];
  const sources = [(i) => pixel(i), (j) => [xs[0], ys[0][j]], (k) => [xs[1], ys[1][k]]];
  const values = [result.input, result.hidden1, result.hidden2];
  el("image", { href: inputImage(result.input), x: left, y: top, width: size, height: size, style: "image-rendering: pixelated" });
  el("rect", { x: left, y: top, width: size, height: size, fill: "none", stroke: "#555" });
  el("text", { x: left, y: top - 10, class: "label" }).textContent = "input: 28 x 28 as the network saw it";
  const lines = el("g", {});
  if (network) {
    for (let layer = 1; layer <= 3; layer++) {
      const weights = network.weights[layer - 1];
      const before = values[layer - 1];
      const contributions = weights.map((row, i) => row.map((w) => w * before[i]));
      const largest = Math.max(1e-9, ...contributions.flat().map(Math.abs));
      for (let target = 0; target < weights[0].length; target++) {
        const incoming = contributions.map((row, i) => [row[target], i]).filter(([c]) => c !== 0);
        incoming.sort((a, b) => Math.abs(b[0]) - Math.abs(a[0]));
        for (const [c, source] of incoming.slice(0, network.strongest[layer])) {
          const [x1, y1] = sources[layer - 1](source);
          el("line", { x1, y1, x2: xs[layer - 1], y2: ys[layer - 1][target], stroke: c > 0 ? "var(--pos)" : "var(--neg)",
                       "stroke-width": 0.6 + 2 * Math.abs(c) / largest, "stroke-opacity": 0.25 + 0.75 * Math.abs(c) / largest }, lines);
        }
      }
    }
  }
  const winner = result.status === "digit" ? result.label : -1;
  layers.forEach((activations, layer) => {
    const highest = layer < 2 ? Math.max(1e-9, ...activations) : 1;  // ReLU is unbounded: shade by the layer's max
    activations.forEach((value, i) => {
      const circle = el("circle", { cx: xs[layer], cy: ys[layer][i], r: L.r[layer], fill: grey(value / highest),
                                     class: `neuron${layer === 2 && i === winner ? " winner" : ""}` });
      let title;
      if (layer < 2) {
        // Numbered from 0, as the pictures (digitnet weights, explain) number them.
        title = atRest ? `hidden layer ${layer + 1}, neuron ${i}: at rest, draw a digit to light it`
                       : `hidden layer ${layer + 1}, neuron ${i}: activation ${value.toFixed(3)}`;
      } else {
        title = atRest ? `digit ${i}` : `digit ${i}: ${(100 * value).toFixed(1)}%`;
      }
      el("title", {}, circle).textContent = title;
      if (layer < 2) {
        circle.setAttribute("tabindex", "0");
        circle.setAttribute("aria-label", title);
        circle.dataset.layer = String(layer + 1);
        circle.dataset.neuron = String(i);
        // Chosen by a pointer that moves over it, a tap or the keyboard; not by a neuron redrawn (after Clear or
        // an answer) under a pointer at rest, whose enter events Chromium fires without a move.
        circle.addEventListener("pointermove", () => {
          if (!(chosen && chosen[0] === layer + 1 && chosen[1] === i)) choose(layer + 1, i);
        });
        for (const show of ["click", "focus"]) circle.addEventListener(show, () => choose(layer + 1, i));
        if (!atRest) {  // the number the shade stands for, where the learner looks, not only in a tooltip
          const text = el("text", { x: xs[layer] + L.r[layer] + 2, y: ys[layer][i] + 3, class: "activation" });
          text.dataset.layer = String(layer + 1);
          text.dataset.neuron = String(i);
          text.textContent = value.toFixed(2);
        }
      } else {
        el("text", { x: xs[2] + 20, y: ys[2][i] + 4 }, net).textContent = atRest ? `${i}` : `${i}  ${(100 * value).toFixed(0)}%`;
      }
    });
  });
  el("text", { x: xs[0] - 30, y: L.labels, class: "label" }).textContent = "16 neurons";
  el("text", { x: xs[1] - 30, y: L.labels, class: "label" }).textContent = "16 neurons";
  el("text", { x: xs[2] - 20, y: L.labels, class: "label" }).textContent = "10 outputs";
  if (chosen) choose(...chosen);  // a new answer: the chosen neuron's numbers are new too
}

function choose(layer, neuron) {
  chosen = [layer, neuron];
  for (const node of net.querySelectorAll(".neuron.chosen")) node.classList.remove("chosen");
  net.querySelector(`.neuron[data-layer="${layer}"][data-neuron="${neuron}"]`)?.classList.add("chosen");
  showPattern(layer, neuron);
  showMaths(layer, neuron);
}

// The hidden layers' activation functions, as the served networks apply them (contract/network.py squash):
// its name, in words, as a formula, and the function. scikit-learn calls the sigmoid "logistic".
const SQUISHES = {
  relu: { name: "ReLU", words: "ReLU", formula: "max(0, z)", apply: (z) => Math.max(0, z) },
  logistic: { name: "sigmoid", words: "sigmoid (logistic)", formula: "1 / (1 + e^-z)", apply: (z) => 1 / (1 + Math.exp(-z)) },
};
const squishOf = (activation) => SQUISHES[activation] || SQUISHES.logistic;

function showMaths(layer, neuron) {
  // The video's core idea for one neuron: weighted sum of the layer below plus bias, squished. Computed here
  // from the served weights and the activations the server returned, so the learner sees the arithmetic.
  if (!network) return;
  const bias = network.biases[layer - 1][neuron];
  const below = layer === 1 ? "784 input pixels" : "16 activations of layer 1";
  const lines = [`bias b = ${bias.toFixed(3)}`];
  delete maths.dataset.sum;
  if (shown && shown !== REST) {
    const inputs = layer === 1 ? shown.input : shown.hidden1;
    const z = network.weights[layer - 1].reduce((sum, row, i) => sum + row[neuron] * inputs[i], bias);
    const { name, formula, apply } = squishOf(network.activation);
    const served = shown[`hidden${layer}`][neuron];
    lines.push(`weighted sum z = w · a + b = ${z.toFixed(3)} (its ${network.weights[layer - 1].length} weights x the ${below}, plus b)`,
               `${name}(z) = ${formula} = ${apply(z).toFixed(3)}: its activation (the network's own: ${served.toFixed(3)})`);
    maths.dataset.sum = String(z);
  } else {
    lines.push(`Draw a digit to see its weighted sum of the ${below} and the squish that makes it an activation.`);
  }
  maths.replaceChildren(...lines.map((line) => Object.assign(document.createElement("span"), { textContent: line })));
  maths.dataset.shown = `${layer}:${neuron}`;
}

function colourOf(property) {
  const hex = getComputedStyle(document.documentElement).getPropertyValue(property).trim();  // #rrggbb
  return [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
}

function showPattern(layer, neuron) {
  if (!network) return;
  // A first-layer neuron: its 784 weights. A second-layer one: the pixel pattern it responds to through the
  // first layer, W1 x W2's column (linear part only), as `digitnet weights` draws it (second_layer_patterns).
  const [W1, W2] = network.weights;
  const weights = layer === 1 ? W1.map((row) => row[neuron]) : W1.map((row) => row.reduce((sum, w, j) => sum + w * W2[j][neuron], 0));
  const side = 28;
  const largest = Math.max(1e-9, ...weights.map(Math.abs));
  const tile = document.createElement("canvas");
  tile.width = tile.height = side;
  const image = tile.getContext("2d").createImageData(side, side);
  const [up, down] = [colourOf("--pos"), colourOf("--neg")];  // the pictures' colours (palette.css)
  weights.forEach((w, i) => {
    const t = Math.abs(w) / largest;  // from black to full colour with the weight's size
    image.data.set([...(w > 0 ? up : down).map((c) => c * t), 255], 4 * i);
  });
  tile.getContext("2d").putImageData(image, 0, 0);
  const draw = pattern.getContext("2d");
  draw.imageSmoothingEnabled = false;
  draw.clearRect(0, 0, pattern.width, pattern.height);
  draw.drawImage(tile, 0, 0, pattern.width, pattern.height);
  caption.textContent = layer === 1
    ? `Hidden layer 1, neuron ${neuron}: its 784 weights as a 28 x 28 picture (blue: ink here pushes it up; red: holds it down).`
    : `Hidden layer 2, neuron ${neuron}: the 28 x 28 pixel pattern it responds to, W1 x W2 (the first layer's 784 x 16 weights`
      + ` times its 16; blue: ink here pushes it up; red: holds it down).`;
  pattern.dataset.shown = `${layer}:${neuron}`;
}

function showImage(blob, asked = generation) {
  // Put an uploaded or example image on the pad, as seen, and send the file itself.
  if (asked !== generation) return;  // fetched before a Clear
  const url = URL.createObjectURL(blob);
  const image = new Image();
  image.onload = () => {
    if (asked !== generation) { URL.revokeObjectURL(url); return; }
    clearPad();
    const scale = Math.min(pad.width / image.width, pad.height / image.height);
    pen.drawImage(image, (pad.width - image.width * scale) / 2, (pad.height - image.height * scale) / 2, image.width * scale, image.height * scale);
    URL.revokeObjectURL(url);
    setPen();
  };
  image.src = url;
  send(blob, asked);
}

function clearAll() {
  // Back to the page as first shown; answers still on their way are dropped (generation).
  generation++;
  clearTimeout(timer);
  pending = current = null;
  drawing = false;
  clearPad();
  answer.textContent = resting.answer;
  answer.dataset.label = answer.dataset.status = "";
  status.textContent = resting.status;
  for (const model of models) {
    model.result = null;
    model.problem = "";
    showRow(model);
  }
  chosen = null;
  drawNetwork(REST);
  maths.textContent = resting.maths;
  delete maths.dataset.shown;
  delete maths.dataset.sum;
  pattern.getContext("2d").clearRect(0, 0, pattern.width, pattern.height);
  delete pattern.dataset.shown;
  caption.textContent = resting.caption;
}

document.getElementById("clear").addEventListener("click", clearAll);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") clearAll();
});
document.getElementById("file").addEventListener("change", (event) => {
  if (event.target.files.length) showImage(event.target.files[0]);
  event.target.value = "";  // else choosing the same file again is no change, and no answer
});
pad.addEventListener("dragover", (event) => { event.preventDefault(); pad.classList.add("dragging"); });
pad.addEventListener("dragleave", () => pad.classList.remove("dragging"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dragging");
  if (event.dataTransfer.files.length) showImage(event.dataTransfer.files[0]);
});
for (const button of document.querySelectorAll(".example")) {
  button.addEventListener("click", async () => {
    const asked = generation;
    showImage(await (await fetch(button.dataset.src)).blob(), asked);
  });
}
function showThreshold() {
  document.getElementById("confidence-value").textContent = `${Math.round(100 * confidence.value)}%`;
}
confidence.addEventListener("input", () => {
  showThreshold();
  if (current) send(current);  // the same image, whichever its source, under the new threshold
});

clearPad();
setPen();
drawNetwork(REST);
phone.addEventListener("change", () => drawNetwork(shown));  // a phone turned, a window narrowed: the other layout
async function json(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

async function loadNetworks() {
  // The default network (what a call that names none gets), then every other network the repository has READY.
  const [main, index] = await Promise.allSettled([json("v1/network"), json("v2/repository/index", { method: "POST" })]);
  const first = main.status === "fulfilled" ? [main.value] : [];
  const ready = index.status === "fulfilled" ? index.value.filter((entry) => entry.state === "READY").map((entry) => entry.name) : [];
  const others = await Promise.all(ready.filter((name) => !first.some((n) => n.name === name)).map(
    (name) => json(`v1/network?model=${encodeURIComponent(name)}`).then(
      (network) => ({ name, network, problem: "" }), (error) => ({ name, network: null, problem: `no weights: ${error.message}` }))));
  const loaded = [...first.map((network) => ({ name: network.name, network, problem: "" })), ...others];
  if (!loaded.some((model) => model.network)) throw main.status === "rejected" ? main.reason : new Error("no network is ready");
  return loaded.map((model) => ({ ...model, result: null, row: null }));
}

function span(className, text) {
  return Object.assign(document.createElement("span"), { className, textContent: text });
}

function listModels() {
  // A row per network, its answer and a radio button to draw it; the line that says how they differ.
  rows.replaceChildren(...models.map((model) => {
    const row = document.createElement("label");
    row.className = "model-row";
    row.dataset.model = model.name;
    const radio = Object.assign(document.createElement("input"),
                                { type: "radio", name: "pictured", value: model.name, checked: model === pictured, disabled: !model.network });
    radio.addEventListener("change", () => {
      picture(model);
      showPictured(true);  // at once, from its last answer: no new request
      history.replaceState(null, "", `?model=${encodeURIComponent(model.name)}`);  // a reload, a link: this network
    });
    row.append(radio, span("model-name", model.name), span("model-kind", model.network ? squishOf(model.network.activation).words : ""),
               span("model-says", ""));
    model.row = row;
    showRow(model);
    return row;
  }));
  document.getElementById("models").hidden = models.length < 2;
  const known = models.filter((model) => model.network);
  const kinds = new Set(known.map((model) => model.network.activation));
  differences.textContent = `Same 784-16-16-10 layers; what differs is ${kinds.size > 1 ? "the squish, and the weights learnt with it" : "the weights"}: `
    + known.map(({ name, network: { activation, accuracy } }) => {
      const { words, formula } = squishOf(activation);
      const score = accuracy === null ? "no cross-validated accuracy on its card" : `${(100 * accuracy).toFixed(1)}% cross-validated`;
      return `${name}: ${words}, ${formula}, ${score}`;
    }).join(" · ");
}

function showRow(model) {
  // One network's answer, in its row: the digit and how sure, no answer and why, or why it could not answer.
  const row = model.row;
  if (!row) return;
  const says = row.querySelector(".model-says");
  const result = model.result;
  row.dataset.label = result && result.status === "digit" ? String(result.label) : "";
  row.dataset.status = model.problem && !result ? "unavailable" : result ? result.status : "";
  if (model.problem && !result) {
    says.textContent = `no answer: ${model.problem}`;
  } else if (!result) {
    says.textContent = "";
  } else if (result.status === "digit") {
    says.replaceChildren(...saying("", result));
  } else if (result.status === "unknown") {
    says.textContent = `no answer: ${result.reason}`;
  } else {
    says.textContent = `cannot read it: ${result.error}`;
  }
}

function picture(model) {
  // The network to draw: its name in the header, its weights for the lines and the chosen neuron's panel.
  pictured = model;
  network = model.network;
  for (const each of models) each.row?.classList.toggle("pictured", each === model);
  const sha256 = network.sha256;
  about.textContent = `${model.name}: ${squishOf(network.activation).name} network · sha256 ${sha256.slice(0, 12)}`;
  about.title = `sha256 ${sha256}`;
  metadata.href = `v2/models/${encodeURIComponent(model.name)}`;
}

loadNetworks().then((loaded) => {
  models = loaded;
  const wanted = new URLSearchParams(location.search).get("model");  // ?model=NAME: the network drawn first
  const drawable = models.filter((model) => model.network);
  pictured = drawable.find((model) => model.name === wanted) || drawable[0];
  listModels();
  picture(pictured);
  if (wanted && pictured.name !== wanted) status.textContent = `no network ${wanted} is ready here: the picture shows ${pictured.name}`;
  confidence.value = network.min_confidence;  // the server's default threshold, as an API call without one gets
  showThreshold();
  if (current) send(current);  // an image sent before the networks were known: every network reads it now
}).catch((error) => {
  resting.status = `no weights (${error.message}): the picture shows activations only`;  // true until a reload: Clear keeps it
  status.textContent = resting.status;
});
