// digitnet's page: draw a digit, send it to POST v1/explain, and draw the network's answer as 3Blue1Brown
// draws it: the input as the model saw it, two layers of 16 neurons lit by activation, ten outputs, and the
// strongest connections coloured by contribution (weight x activation). Weights come once from GET v1/network.
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
const X = { input: 20, hidden1: 330, hidden2: 500, output: 670 };  // layer columns in the SVG

let network = null;   // {activation, weights: [W1 784x16, W2 16x16, W3 16x10], biases, strongest: {layer: count}}
let inFlight = false; // one request at a time ...
let pending = null;   // ... and the latest image waiting behind it
let current = null;   // the image last sent (drawn, example or upload): a new threshold asks about it again
let generation = 0;   // bumped by Clear: an answer about an image from before it is not shown
let timer = 0;
let drawing = false;
const resting = { answer: answer.textContent, caption: caption.textContent, status: "" };  // as the page first shows them

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
    const url = `v1/explain?min_confidence=${confidence.value}`;
    const response = await fetch(url, { method: "POST", body: image, headers: { "Content-Type": image.type || "application/octet-stream" } });
    const result = await response.json();
    if (asked !== generation) return;  // the pad was cleared while the server worked: this answer is about nothing shown
    if (!response.ok) {
      status.textContent = result.error || `the server answered ${response.status}`;
      if (result.status !== "error") return;
    } else {
      status.textContent = resting.status;
    }
    show(result);
  } catch (error) {
    if (asked === generation) status.textContent = `cannot reach the server: ${error.message}`;
  } finally {
    inFlight = false;
    if (pending) { const next = pending; pending = null; send(next); }
  }
}

function show(result) {
  if (result.status === "digit") {
    answer.innerHTML = `The network says <strong>${result.label}</strong> (${(100 * result.confidence).toFixed(0)}% sure)`;
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

function drawNetwork(result) {
  net.replaceChildren();
  const size = 280, top = 75;
  const layers = [result.hidden1, result.hidden2, result.probabilities.length ? result.probabilities : new Array(10).fill(0)];
  const ys = [column(16, 10, 420), column(16, 10, 420), column(10, 30, 400)];
  const xs = [X.hidden1, X.hidden2, X.output];
  const pixel = (i) => [X.input + (i % 28 + 0.5) * size / 28, top + (Math.floor(i / 28) + 0.5) * size / 28];
  const sources = [(i) => pixel(i), (j) => [X.hidden1, ys[0][j]], (k) => [X.hidden2, ys[1][k]]];
  const values = [result.input, result.hidden1, result.hidden2];
  el("image", { href: inputImage(result.input), x: X.input, y: top, width: size, height: size, style: "image-rendering: pixelated" });
  el("rect", { x: X.input, y: top, width: size, height: size, fill: "none", stroke: "#555" });
  el("text", { x: X.input, y: top - 10, class: "label" }).textContent = "input: 28 x 28 as the network saw it";
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
      const circle = el("circle", { cx: xs[layer], cy: ys[layer][i], r: layer < 2 ? 10 : 13, fill: grey(value / highest),
                                     class: `neuron${layer === 2 && i === winner ? " winner" : ""}` });
      const title = layer < 2 ? `hidden layer ${layer + 1}, neuron ${i + 1}: activation ${value.toFixed(3)}` : `digit ${i}: ${(100 * value).toFixed(1)}%`;
      el("title", {}, circle).textContent = title;
      if (layer < 2) {
        circle.setAttribute("tabindex", "0");
        circle.setAttribute("aria-label", title);
        circle.dataset.layer = String(layer + 1);
        circle.dataset.neuron = String(i);
        for (const show of ["mouseenter", "focus"]) circle.addEventListener(show, () => showPattern(layer + 1, i));
      } else {
        el("text", { x: xs[2] + 20, y: ys[2][i] + 4 }, net).textContent = `${i}  ${(100 * value).toFixed(0)}%`;
      }
    });
  });
  el("text", { x: X.hidden1 - 30, y: 428, class: "label" }).textContent = "16 neurons";
  el("text", { x: X.hidden2 - 30, y: 428, class: "label" }).textContent = "16 neurons";
  el("text", { x: X.output - 20, y: 428, class: "label" }).textContent = "10 outputs";
}

function colourOf(property) {
  const hex = getComputedStyle(document.documentElement).getPropertyValue(property).trim();  // #rrggbb
  return [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
}

function showPattern(layer, neuron) {
  if (!network) return;
  const weights = network.weights[layer - 1].map((row) => row[neuron]);
  const side = layer === 1 ? 28 : 4;
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
    ? `Hidden layer 1, neuron ${neuron + 1}: its 784 weights as a 28 x 28 picture (blue: ink here pushes it up; red: holds it down).`
    : `Hidden layer 2, neuron ${neuron + 1}: its 16 weights from layer 1 as a 4 x 4 grid.`;
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
  net.replaceChildren();
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
fetch("v1/network").then(async (response) => {
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  network = body;
  const before = confidence.value;
  confidence.value = body.min_confidence;  // the server's default threshold, as an API call without one gets
  showThreshold();
  if (confidence.value !== before && current) send(current);
}).catch((error) => {
  resting.status = `no weights (${error.message}): the picture shows activations only`;  // true until a reload: Clear keeps it
  status.textContent = resting.status;
});
