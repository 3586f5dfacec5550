// fastopt playground page.  Every trajectory comes from the server (POST /api/run), which steps
// fastopt's optimizers; this script only builds the controls, animates what it was sent and draws it.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  config: null, surface: null, grids: {}, start: null,
  result: null, body: null, frame: 0, playing: false, dirty: true,
  generation: 0, computing: null, wanted: null, loop: null,
  view: "contour", yaw: -0.6, elevation: 0.55, drag: null,
};

// ---------------------------------------------------------------- numbers and colours
function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e5 ? String(Number(v.toPrecision(6))) : v.toExponential(5);  // 6 significant digits
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colormap(t) {  // t in [0, 1] -> [r, g, b]
  const u = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(u), VIRIDIS.length - 2), f = u - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

// Heights shown: for the polynomial valleys log10 of the loss above the minimum (as the PNG's contours),
// floored at the given quantile of the grid's, the loss itself otherwise; then scaled to [0, 1] over the grid.
// The 3-D mesh takes a higher floor: sampled more coarsely, a deep log valley would show as spikes.
function heightScale(surface, grid, quantile) {
  const values = grid.z.flat().filter((v) => v !== null);
  let lift = (v) => v;
  if (surface.log_levels) {
    const floor = surface.min_value !== null ? surface.min_value : Math.min(...values);
    const above = values.map((v) => v - floor).sort((a, b) => a - b);
    const top = above[above.length - 1];
    const bottom = Math.max(above[Math.floor(above.length * quantile)], top * 1e-9, 1e-300);
    lift = (v) => Math.log10(Math.max(v - floor, bottom));
  }
  const lifted = values.map(lift);
  let lo = Infinity, hi = -Infinity;
  for (const v of lifted) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const span = hi > lo ? hi - lo : 1;
  return (v) => (v === null || !Number.isFinite(v) ? 1 : (lift(v) - lo) / span);
}

// ---------------------------------------------------------------- server
async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function setState(name) { document.body.dataset.state = name; }

async function loadGrid(name) {
  if (!state.grids[name]) {
    const grid = await (await api(`/api/grid?surface=${encodeURIComponent(name)}`)).json();
    const surface = state.config.surfaces.find((s) => s.name === name);
    grid.height = heightScale(surface, grid, 0.0005);
    grid.height3d = heightScale(surface, grid, 0.03);
    grid.image = null;  // the contour plot's background, drawn once
    state.grids[name] = grid;
  }
  return state.grids[name];
}

// ---------------------------------------------------------------- controls
// What is typed is sent, as a number when it is one: the server is the one to check it.  (A number input
// whose text is not a number reads as "", which the server refuses as such.)
const knobValue = (input) => (input.value.trim() === "" || Number.isNaN(Number(input.value))
  ? input.value : Number(input.value));

function toSlider(knob, value) {
  return knob.scale === "log" ? Math.log10(value) : value;
}
function fromSlider(knob, position) {
  return knob.scale === "log" ? Number((10 ** position).toPrecision(3)) : Number(Number(position).toPrecision(4));
}

function knobControl(optimizer, knob, id, value, label) {
  const row = document.createElement("label");
  const slider = document.createElement("input");
  const number = document.createElement("input");
  row.append(label || knob.label, slider, number);
  slider.type = "range";
  slider.min = toSlider(knob, knob.slider[0]);
  slider.max = toSlider(knob, knob.slider[1]);
  slider.step = knob.scale === "log" ? "0.01" : "0.0001";
  slider.setAttribute("aria-label", `${optimizer} ${label || knob.label} slider`);
  number.type = "number";
  number.step = "any";
  number.id = id;
  number.setAttribute("aria-label", `${optimizer} ${label || knob.label}`);
  const set = (v) => { number.value = v; slider.value = toSlider(knob, v); };
  set(value);
  slider.addEventListener("input", () => { number.value = fromSlider(knob, slider.value); changed(); });
  number.addEventListener("input", () => {
    const v = Number(number.value);
    if (Number.isFinite(v) && (knob.scale !== "log" || v > 0)) slider.value = toSlider(knob, v);
    changed();
  });
  row.reset = set;
  return row;
}

function buildOptimizers(chosen) {
  const box = $("optimizers");
  box.textContent = "";
  const {colors, knobs} = state.config;
  state.config.optimizers.forEach((opt, i) => {
    opt.color = colors[i % colors.length];
    const div = document.createElement("div");
    div.className = "optimizer";
    div.dataset.name = opt.name;
    const head = document.createElement("label");
    const box_ = document.createElement("input");
    box_.type = "checkbox";
    box_.id = `use-${opt.name}`;
    box_.checked = chosen.includes(opt.name);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = opt.color;
    head.append(box_, " ", swatch, ` ${opt.name} `);
    const cls = document.createElement("span");
    cls.className = "note";
    cls.textContent = opt.class;
    head.append(cls);
    const knobBox = document.createElement("div");
    knobBox.className = "knobs";
    opt.rows = [knobControl(opt.name, knobs.lr, `lr-${opt.name}`, 1e-3, "learning rate")];
    for (const [name, value] of Object.entries(opt.hyperparameters)) {
      if (name === "betas") {
        value.forEach((b, k) => opt.rows.push(knobControl(opt.name, knobs.beta, `beta${k + 1}-${opt.name}`, b,
                                                          `beta${k + 1}`)));
      } else {
        opt.rows.push(knobControl(opt.name, knobs[name], `${name}-${opt.name}`, value));
      }
    }
    knobBox.append(...opt.rows);
    div.append(head, knobBox);
    div.classList.toggle("on", box_.checked);
    box_.addEventListener("change", () => { div.classList.toggle("on", box_.checked); changed(); });
    box.append(div);
  });
}

function resetKnobs() {  // the surface's learning rates, the optimizers' defaults
  for (const opt of state.config.optimizers) {
    const values = [state.surface.lrs[opt.name]];
    for (const [name, value] of Object.entries(opt.hyperparameters)) values.push(...(name === "betas" ? value : [value]));
    opt.rows.forEach((row, k) => row.reset(values[k]));
  }
}

function chosenOptimizers() {
  return state.config.optimizers.filter((opt) => $(`use-${opt.name}`).checked);
}

function requestBody() {
  return {
    surface: state.surface.name,
    start: state.start,
    steps: knobValue($("steps")),
    optimizers: chosenOptimizers().map((opt) => {
      const hyper = {};
      for (const [name, value] of Object.entries(opt.hyperparameters)) {
        hyper[name] = name === "betas"
          ? value.map((_, k) => knobValue($(`beta${k + 1}-${opt.name}`)))
          : knobValue($(`${name}-${opt.name}`));
      }
      return {name: opt.name, lr: knobValue($(`lr-${opt.name}`)), hyperparameters: hyper};
    }),
  };
}

function changed() {  // any control: the next Run asks the server again (and an answer on its way is dropped)
  state.generation += 1;
  state.dirty = true;
  state.playing = false;
  state.result = null;
  state.frame = 0;
  setState("ready");
  draw();
}

async function chooseSurface(name) {
  state.surface = state.config.surfaces.find((s) => s.name === name);
  state.start = state.surface.start.slice();
  $("surface").value = name;
  $("formula").textContent = `f(x, y) = ${state.surface.formula}`;
  $("note").textContent = state.surface.note;
  $("steps").value = state.surface.steps;
  resetKnobs();
  changed();  // before the wait for the grid: an answer for the old surface is dropped
  await loadGrid(name);
  draw();
}

// ---------------------------------------------------------------- running
// Asks the server for the run of the controls as they are.  Controls changed while it computes make its
// answer (or error) outdated: it is dropped, and false returned, leaving the page to the newer request.
// state.computing is the generation being computed (null when none).
async function ensureRun() {
  if (!state.dirty && state.result) return true;
  const generation = state.generation;
  const body = requestBody();
  let result;
  try {
    if (!body.optimizers.length) throw new Error("choose at least one optimizer");
    state.computing = generation;
    setState("computing");
    result = await (await api("/api/run", body)).json();
  } catch (error) {
    if (generation !== state.generation) return false;
    showError(error.message);
    setState("error");
    return false;
  } finally {
    if (state.computing === generation) state.computing = null;
  }
  if (generation !== state.generation) return false;
  Object.assign(state, {result, body, frame: 0, dirty: false});
  showError("");
  return true;
}

// A diverged path has points up to step diverged_at - 1; the animation goes on to step diverged_at, where
// it is marked as diverged.
const lastFrame = () => Math.max(...state.result.trajectories.map(
  (t) => (t.diverged_at === null ? t.points.length - 1 : t.diverged_at)));

function stepsPerFrame() {
  const v = Number($("speed").value);  // 0..100 -> 1..200 steps a frame, geometrically
  return Math.max(1, Math.round(200 ** (v / 100)));
}

function schedule() {  // one animation loop at most, however often Run is pressed
  if (state.loop === null) state.loop = requestAnimationFrame(animate);
}

function animate() {
  state.loop = null;
  if (!state.playing) return;
  state.frame = Math.min(state.frame + stepsPerFrame(), lastFrame());
  if (state.frame >= lastFrame()) {
    state.playing = false;
    setState("done");
  }
  draw();
  if (state.playing) schedule();
}

const computingThis = () => state.computing !== null && state.computing === state.generation;

// Run and Step say what is wanted, then act once the trajectories are there; pressed while the server
// computes the current controls' run, they (and Pause, and Reset) only change what its answer will do.
async function request(action) {
  state.wanted = action;
  if (computingThis()) return;
  if (!(await ensureRun())) return;
  act();
}

function act() {
  const wanted = state.wanted;
  state.wanted = null;
  if (wanted === "play") {
    if (state.frame >= lastFrame()) state.frame = 0;
    state.playing = true;
    setState("running");
    schedule();
    return;
  }
  state.playing = false;
  if (wanted === "step") state.frame = Math.min(state.frame + 1, lastFrame());
  setState(state.frame >= lastFrame() ? "done" : "paused");
  draw();
}

const run = () => request("play");
const stepOnce = () => request("step");

function pause() {
  state.wanted = null;
  if (!state.playing) return;
  state.playing = false;
  setState("paused");
}

function reset() {
  state.wanted = null;
  state.playing = false;
  state.frame = 0;
  setState(state.computing !== null ? "computing" : "ready");
  draw();
}

function download(blob, filename) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function downloadCsv() {
  if (!state.body || state.dirty) { showError("run first: the CSV holds the trajectories of the last run"); return; }
  try {
    download(await (await api("/api/csv", state.body)).blob(), `fastopt-playground-${state.surface.name}.csv`);
  } catch (error) { showError(error.message); }
}

function downloadPng() {
  $("plot").toBlob((blob) => download(blob, `fastopt-playground-${state.surface.name}-${state.view}.png`));
}

// ---------------------------------------------------------------- drawing
const MARGIN = {left: 58, right: 14, top: 30, bottom: 44};

// Each trajectory as shown at the current frame: its points so far, and its readout.
function shown() {
  if (!state.result) return [];
  return state.result.trajectories.map((t) => {
    const opt = state.config.optimizers.find((o) => o.name === t.optimizer);
    const k = Math.min(state.frame, t.points.length - 1);
    const diverged = t.diverged_at !== null && state.frame >= t.diverged_at;
    return {t, color: opt.color, k, diverged, point: t.points[k], loss: t.losses[k]};
  });
}

function readoutText(s) {
  const text = `Steps: ${s.k} | Loss: ${fmt(s.loss)}`;
  return s.diverged ? `${text} | DIVERGED at step ${s.t.diverged_at}` : text;
}

function drawReadout(items) {
  const list = $("readout");
  list.textContent = "";
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = state.dirty ? "Press Run (or Step) to compute the trajectories." : "";
    list.append(li);
    return;
  }
  for (const s of items) {
    const li = document.createElement("li");
    li.dataset.optimizer = s.t.optimizer;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = s.color;
    const name = document.createElement("span");
    name.textContent = ` ${s.t.optimizer} (lr=${fmt(s.t.lr)}): `;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = `Steps: ${s.k} | Loss: ${fmt(s.loss)}`;
    li.append(swatch, name, status);
    if (s.diverged) {
      const note = document.createElement("span");
      note.className = "diverged";
      note.textContent = ` DIVERGED at step ${s.t.diverged_at}: a non-finite value; the path ends at step ${s.k}`;
      li.append(note);
    }
    list.append(li);
  }
}

function plotBox(canvas) {
  return {x: MARGIN.left, y: MARGIN.top, w: canvas.width - MARGIN.left - MARGIN.right,
          h: canvas.height - MARGIN.top - MARGIN.bottom};
}

function toCanvas(box, [x, y]) {
  const [xmin, xmax, ymin, ymax] = state.surface.window;
  return [box.x + (x - xmin) / (xmax - xmin) * box.w, box.y + (ymax - y) / (ymax - ymin) * box.h];
}

function fromCanvas(box, cx, cy) {
  const [xmin, xmax, ymin, ymax] = state.surface.window;
  return [xmin + (cx - box.x) / box.w * (xmax - xmin), ymax - (cy - box.y) / box.h * (ymax - ymin)];
}

// Marching squares over the grid of heights in [0, 1]: segments of each level, in grid coordinates.
function contourSegments(h, levels) {
  const segments = [];
  const n = h.length, m = h[0].length;
  for (const level of levels) {
    for (let i = 0; i + 1 < n; i++) {
      for (let j = 0; j + 1 < m; j++) {
        const corners = [[i, j], [i, j + 1], [i + 1, j + 1], [i + 1, j]];
        const v = corners.map(([a, b]) => h[a][b]);
        const cross = [];
        for (let e = 0; e < 4; e++) {
          const [a, b] = [v[e], v[(e + 1) % 4]];
          if ((a < level) !== (b < level)) {
            const f = (level - a) / (b - a);
            const [p, q] = [corners[e], corners[(e + 1) % 4]];
            cross.push([p[0] + f * (q[0] - p[0]), p[1] + f * (q[1] - p[1])]);
          }
        }
        if (cross.length >= 2) segments.push([cross[0], cross[1]]);
        if (cross.length === 4) segments.push([cross[2], cross[3]]);
      }
    }
  }
  return segments;
}

function contourBackground(grid, box) {
  if (grid.image && grid.image.width === box.w && grid.image.height === box.h) return grid.image;
  const n = grid.y.length, m = grid.x.length;
  const heights = grid.z.map((row) => row.map(grid.height));
  const cells = document.createElement("canvas");
  cells.width = m; cells.height = n;
  const data = cells.getContext("2d").createImageData(m, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      const [r, g, b] = colormap(heights[i][j]);
      const p = ((n - 1 - i) * m + j) * 4;  // row 0 is ymin, at the bottom
      data.data.set([r, g, b, 150], p);
    }
  }
  cells.getContext("2d").putImageData(data, 0, 0);
  const image = document.createElement("canvas");
  image.width = box.w; image.height = box.h;
  const ctx = image.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, box.w, box.h);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(cells, 0, 0, box.w, box.h);
  ctx.strokeStyle = "rgba(0, 0, 0, 0.35)";
  ctx.lineWidth = 0.7;
  ctx.beginPath();
  const levels = Array.from({length: 24}, (_, k) => (k + 0.5) / 24);
  for (const [[i0, j0], [i1, j1]] of contourSegments(heights, levels)) {
    ctx.moveTo(j0 / (m - 1) * box.w, (1 - i0 / (n - 1)) * box.h);
    ctx.lineTo(j1 / (m - 1) * box.w, (1 - i1 / (n - 1)) * box.h);
  }
  ctx.stroke();
  grid.image = image;
  return image;
}

function star(ctx, x, y, r) {
  ctx.beginPath();
  for (let k = 0; k < 10; k++) {
    const a = -Math.PI / 2 + k * Math.PI / 5, rr = k % 2 ? r * 0.45 : r;
    ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
  }
  ctx.closePath();
  ctx.fillStyle = "gold";
  ctx.fill();
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 1;
  ctx.stroke();
}

function cross(ctx, x, y, r, color) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 5;
  for (const pass of [0, 1]) {
    ctx.beginPath();
    ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r);
    ctx.moveTo(x - r, y + r); ctx.lineTo(x + r, y - r);
    ctx.stroke();
    ctx.strokeStyle = color;
    ctx.lineWidth = 2.5;
  }
}

function startMarker(ctx, x, y) {
  ctx.beginPath();
  ctx.arc(x, y, 7, 0, 2 * Math.PI);
  ctx.fillStyle = "#fff";
  ctx.fill();
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = "#000";
  ctx.stroke();
}

function drawPath(ctx, s, project) {
  ctx.strokeStyle = s.color;
  ctx.lineWidth = 2.2;
  ctx.lineJoin = "round";
  ctx.beginPath();
  for (let k = 0; k <= s.k; k++) ctx.lineTo(...project(s.t.points[k], s.t.losses[k]));
  ctx.stroke();
  const [x, y] = project(s.point, s.loss);
  if (s.diverged) {
    cross(ctx, x, y, 7, s.color);
  } else {
    ctx.beginPath();
    ctx.arc(x, y, 5, 0, 2 * Math.PI);
    ctx.fillStyle = s.color;
    ctx.fill();
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1;
    ctx.stroke();
  }
}

function drawAxes(ctx, box) {
  const [xmin, xmax, ymin, ymax] = state.surface.window;
  ctx.strokeStyle = "#333";
  ctx.lineWidth = 1;
  ctx.strokeRect(box.x, box.y, box.w, box.h);
  ctx.fillStyle = "#222";
  ctx.font = "12px system-ui, sans-serif";
  for (let k = 0; k <= 4; k++) {
    const x = xmin + k / 4 * (xmax - xmin), y = ymin + k / 4 * (ymax - ymin);
    const [cx] = toCanvas(box, [x, ymin]);
    const [, cy] = toCanvas(box, [xmin, y]);
    ctx.textAlign = "center";
    ctx.fillText(fmt(Number(x.toPrecision(4))), cx, box.y + box.h + 16);
    ctx.textAlign = "right";
    ctx.fillText(fmt(Number(y.toPrecision(4))), box.x - 6, cy + 4);
  }
  ctx.textAlign = "center";
  ctx.fillText("x", box.x + box.w / 2, box.y + box.h + 34);
  ctx.fillText("y", 14, box.y + box.h / 2);
}

function drawTitle(ctx, canvas) {
  ctx.fillStyle = "#222";
  ctx.font = "13px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.fillText(`${state.surface.name}: f(x, y) = ${state.surface.formula}`, MARGIN.left, 18);
}

// The legend, on the canvas too, so that a downloaded PNG says what it shows.
function drawLegend(ctx, canvas, items) {
  if (!items.length) return;
  ctx.font = "12px ui-monospace, monospace";
  const lines = items.map((s) => `${s.t.optimizer} (lr=${fmt(s.t.lr)})  ${readoutText(s)}`);
  const width = Math.max(...lines.map((l) => ctx.measureText(l).width)) + 34;
  const x = canvas.width - MARGIN.right - width - 6, y = MARGIN.top + 6;
  ctx.fillStyle = "rgba(255, 255, 255, 0.88)";
  ctx.fillRect(x, y, width, 16 * lines.length + 8);
  lines.forEach((line, k) => {
    ctx.fillStyle = items[k].color;
    ctx.fillRect(x + 6, y + 9 + 16 * k, 18, 5);
    ctx.fillStyle = items[k].diverged ? "#b00020" : "#111";
    ctx.textAlign = "left";
    ctx.fillText(line, x + 28, y + 16 + 16 * k);
  });
}

function drawContour(ctx, canvas, items) {
  const box = plotBox(canvas);
  const grid = state.grids[state.surface.name];
  ctx.drawImage(contourBackground(grid, box), box.x, box.y);
  ctx.save();
  ctx.beginPath();
  ctx.rect(box.x, box.y, box.w, box.h);
  ctx.clip();
  for (const m of state.surface.minima) star(ctx, ...toCanvas(box, m), 9);
  const project = (p) => toCanvas(box, p);
  for (const s of items) drawPath(ctx, s, project);
  startMarker(ctx, ...toCanvas(box, state.start));
  ctx.restore();
  drawAxes(ctx, box);
}

// 3-D: the surface as a mesh of quads, painted far to near, seen from (yaw, elevation); heights as in the
// contour plot's colours.  Paths are drawn on top.
function projector(canvas) {
  const [xmin, xmax, ymin, ymax] = state.surface.window;
  const cy = Math.cos(state.yaw), sy = Math.sin(state.yaw);
  const ce = Math.cos(state.elevation), se = Math.sin(state.elevation);
  const scale = 0.62 * Math.min(canvas.width, canvas.height), ox = canvas.width / 2, oy = canvas.height * 0.56;
  return (x, y, h) => {
    const X = (x - xmin) / (xmax - xmin) - 0.5, Y = (y - ymin) / (ymax - ymin) - 0.5, Z = 0.45 * h - 0.2;
    const x1 = X * cy - Y * sy, y1 = X * sy + Y * cy;
    return [ox + scale * x1, oy - scale * (y1 * se + Z * ce), y1 * ce - Z * se];  // screen x, y and depth
  };
}

function draw3d(ctx, canvas, items) {
  const grid = state.grids[state.surface.name];
  const project = projector(canvas);
  const stride = Math.max(1, Math.round((grid.x.length - 1) / 40));
  const rows = [];
  for (let i = 0; i < grid.y.length; i += stride) {
    rows.push([]);
    for (let j = 0; j < grid.x.length; j += stride) {
      const h = grid.height3d(grid.z[i][j]);
      rows[rows.length - 1].push({p: project(grid.x[j], grid.y[i], h), h});
    }
  }
  const quads = [];
  for (let i = 0; i + 1 < rows.length; i++) {
    for (let j = 0; j + 1 < rows[i].length; j++) {
      const c = [rows[i][j], rows[i][j + 1], rows[i + 1][j + 1], rows[i + 1][j]];
      quads.push({c, depth: c.reduce((d, v) => d + v.p[2], 0) / 4, h: c.reduce((d, v) => d + v.h, 0) / 4});
    }
  }
  quads.sort((a, b) => b.depth - a.depth);
  ctx.lineWidth = 0.4;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.25)";
  for (const q of quads) {
    ctx.beginPath();
    for (const v of q.c) ctx.lineTo(v.p[0], v.p[1]);
    ctx.closePath();
    const [r, g, b] = colormap(q.h);
    ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
    ctx.fill();
    ctx.stroke();
  }
  const lift = (p, loss) => project(p[0], p[1], Math.min(grid.height3d(loss), 1.05) + 0.01).slice(0, 2);
  for (const m of state.surface.minima) star(ctx, ...lift(m, state.surface.min_value), 8);
  for (const s of items) drawPath(ctx, s, lift);
  const [sx, sy] = state.start;
  startMarker(ctx, ...project(sx, sy, Math.min(grid.height3d(startLoss()), 1.05) + 0.01).slice(0, 2));
}

function startLoss() {  // the start's loss, from the run when there is one, else from the nearest grid node
  if (state.result) return state.result.trajectories[0].losses[0];
  const grid = state.grids[state.surface.name];
  const nearest = (axis, v) => axis.reduce((best, a, k) => (Math.abs(a - v) < Math.abs(axis[best] - v) ? k : best), 0);
  return grid.z[nearest(grid.y, state.start[1])][nearest(grid.x, state.start[0])];
}

function draw() {
  if (!state.surface || !state.grids[state.surface.name]) return;
  const canvas = $("plot");
  const ctx = canvas.getContext("2d");
  ctx.save();  // every frame starts from the context's defaults: the same state draws the same pixels
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const items = shown();
  if (state.view === "contour") drawContour(ctx, canvas, items); else draw3d(ctx, canvas, items);
  drawTitle(ctx, canvas);
  drawLegend(ctx, canvas, items);
  ctx.restore();
  drawReadout(items);
  $("start-text").textContent = `(${fmt(state.start[0])}, ${fmt(state.start[1])})`;
}

function setView(view) {
  state.view = view;
  $("view-contour").setAttribute("aria-pressed", String(view === "contour"));
  $("view-3d").setAttribute("aria-pressed", String(view === "3d"));
  $("plot").classList.toggle("rotate", view === "3d");
  $("view-hint").textContent = view === "3d" ? "drag to rotate" : "click to set the start point";
  draw();
}

function canvasPoint(event) {
  const canvas = $("plot"), rect = canvas.getBoundingClientRect();  // the rectangle includes the border
  return [(event.clientX - rect.left - canvas.clientLeft) * canvas.width / canvas.clientWidth,
          (event.clientY - rect.top - canvas.clientTop) * canvas.height / canvas.clientHeight];
}

function pointerHandlers() {
  const canvas = $("plot");
  canvas.addEventListener("pointerdown", (event) => {
    if (state.view === "3d") {
      state.drag = {x: event.clientX, y: event.clientY, yaw: state.yaw, elevation: state.elevation};
      canvas.setPointerCapture(event.pointerId);
      return;
    }
    const box = plotBox(canvas);
    const [cx, cy] = canvasPoint(event);
    if (cx < box.x || cx > box.x + box.w || cy < box.y || cy > box.y + box.h) return;
    state.start = fromCanvas(box, cx, cy).map((v) => Number(v.toPrecision(4)));
    changed();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.drag) return;
    state.yaw = state.drag.yaw + (event.clientX - state.drag.x) * 0.01;
    state.elevation = Math.min(Math.PI / 2, Math.max(0.05, state.drag.elevation + (event.clientY - state.drag.y) * 0.01));
    draw();
  });
  const stop = () => { state.drag = null; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
}

// ---------------------------------------------------------------- start
async function main() {
  try {
    state.config = await (await api("/api/config")).json();
  } catch (error) {
    showError(`cannot load the playground's configuration: ${error.message}`);
    setState("error");
    return;
  }
  const query = new URLSearchParams(location.search);
  const {surfaces, default_optimizers: defaults, limits, version} = state.config;
  $("version").textContent = `fastopt ${version}`;
  const select = $("surface");
  for (const s of surfaces) select.append(new Option(s.name, s.name));
  const wanted = (query.get("optimizers") || "").split(",").filter((n) => state.config.optimizers.some((o) => o.name === n));
  buildOptimizers(wanted.length ? wanted : defaults);
  $("steps").max = limits.max_steps;
  const speed = () => { $("speed-text").textContent = `${stepsPerFrame()} steps/frame`; };
  speed();
  $("speed").addEventListener("input", speed);
  select.addEventListener("change", () => chooseSurface(select.value).catch((e) => showError(e.message)));
  $("steps").addEventListener("input", changed);
  $("default-start").addEventListener("click", () => { state.start = state.surface.start.slice(); changed(); });
  $("run").addEventListener("click", run);
  $("pause").addEventListener("click", pause);
  $("step").addEventListener("click", stepOnce);
  $("reset").addEventListener("click", reset);
  $("view-contour").addEventListener("click", () => setView("contour"));
  $("view-3d").addEventListener("click", () => setView("3d"));
  $("download-csv").addEventListener("click", downloadCsv);
  $("download-png").addEventListener("click", downloadPng);
  pointerHandlers();
  const first = surfaces.some((s) => s.name === query.get("surface")) ? query.get("surface") : surfaces[0].name;
  try {
    await chooseSurface(first);
  } catch (error) {
    showError(error.message);
    setState("error");
    return;
  }
  setView("contour");
  setState("ready");
}

main();
