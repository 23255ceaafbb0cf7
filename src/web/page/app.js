// The page of a running power daemon: live power by server-sent events,
// the rest fetched now and then. Text goes in with textContent only.
"use strict";

const STATE_EVERY_MS = 5000;
const CHART_EVERY_MS = 60000;
const SENSOR_EVERY_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

let state = null;
let span = "day";
const live = {}; // meter -> the newest reading from the event stream

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function watts(w) {
  if (w === null || w === undefined) return "?";
  return Math.round(w).toLocaleString("en-US");
}

// A power in W, or a gas or water meter's flow in m³/h (fractions matter).
function rate(value, unit) {
  if (unit !== "m³/h") return watts(value);
  if (value === null || value === undefined) return "?";
  return value.toFixed(3);
}

function kwh(value, digits) {
  if (value === null || value === undefined) return "–";
  return value.toFixed(digits === undefined ? 3 : digits);
}

function money(value) {
  if (value === null || value === undefined || !state) return null;
  return (state.currency ? state.currency + " " : "") + value.toFixed(2);
}

function ago(t) {
  if (!t) return "no reading yet";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function clock(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function duration(s) {
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " days";
}

function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}

// Meters -------------------------------------------------------------------

function meterCard(m) {
  let card = document.getElementById("meter-" + m.name);
  if (!card) {
    card = el("section", { class: "card meter", id: "meter-" + m.name });
    card.append(el("h2", {}, "Meter " + m.name));
    const now = el("div", { class: "now", "data-field": "power" });
    card.append(now, el("div", { class: "muted when", "data-field": "when" }));
    const figures = el("div", { class: "figures" });
    for (const [field, label] of [["today", "Today"], ["month", "This month"],
                                   ["total", "Total (committed)"], ["drift", "Drift against the register"]]) {
      const f = el("div", { class: "figure", "data-figure": field });
      f.append(el("span", { class: "muted" }, label), el("b", { "data-field": field }),
               el("span", { class: "export", "data-field": field + "-export" }),
               el("span", { class: "muted", "data-field": field + "-note" }));
      figures.append(f);
    }
    card.append(figures);
    document.getElementById("meters").append(card);
  }
  return card;
}

function setField(card, field, text) {
  const node = card.querySelector('[data-field="' + field + '"]');
  if (node) node.textContent = text;
}

function showPower(card, m, power, estimate, t) {
  const node = card.querySelector('[data-field="power"]');
  node.textContent = (estimate && power !== null ? "≤ " : "") + rate(power, m.rate_unit) + " ";
  node.append(el("small", {}, m.rate_unit));
  node.setAttribute("data-watts", power === null ? "" : String(power));
  setField(card, "when", (estimate ? "estimate: no pulse since " : "") + ago(t));
}

// Import (with its cost: the tariff is a price per kWh, so none for gas or
// water) and, where the meter has export, export beside it.
function showTotals(card, m, r) {
  for (const field of ["today", "month"]) {
    const value = r[field + "_kwh"];
    const exported = r[field + "_export_kwh"];
    setField(card, field, kwh(value) + " " + m.unit + (exported === null || exported === undefined ? "" : " in"));
    setField(card, field + "-export", exported === null || exported === undefined ? "" : kwh(exported) + " " + m.unit + " out");
    const priced = state.tariff !== null && value !== null && m.kind === "electricity";
    setField(card, field + "-note", priced ? money(value * state.tariff) : "");
  }
}

function meterOf(name) {
  return state ? state.meters.find((m) => m.name === name) : undefined;
}

function renderMeters() {
  for (const m of state.meters) {
    const card = meterCard(m);
    const r = live[m.name];
    if (r) showPower(card, m, r.power_w, r.estimate, r.time);
    else showPower(card, m, m.power_w, m.estimate, m.power_time);
    showTotals(card, m, r && r.today_kwh !== null ? r : m);
    setField(card, "total", kwh(m.energy_kwh) + " " + m.unit);
    setField(card, "total-export", m.export_kwh === null ? "" : kwh(m.export_kwh) + " " + m.unit + " out");
    setField(card, "total-note", m.register ? "from the register" : "pulse " + m.committed_pulses);
    card.querySelector('[data-figure="drift"]').hidden = m.register || m.kind !== "electricity";
    if (m.drift) {
      setField(card, "drift", (m.drift.drift_kwh >= 0 ? "+" : "") + kwh(m.drift.drift_kwh) + " kWh");
      setField(card, "drift-note", Math.abs(m.drift.pulses) + (m.drift.pulses >= 0 ? " pulses missed" : " pulses extra"));
    } else {
      setField(card, "drift", "–");
      setField(card, "drift-note", "power.py register shows it");
    }
  }
}

// Service ------------------------------------------------------------------

function renderService() {
  const body = document.querySelector("#sinks tbody");
  body.replaceChildren();
  let failing = 0;
  for (const s of state.sinks) {
    const row = el("tr", { "data-sink": s.name });
    row.append(el("td", {}, s.name));
    const status = s.failing_for_s === null ? "ok" : "failing for " + duration(s.failing_for_s);
    const cell = el("td", { class: s.failing_for_s === null ? "healthy" : "failing" }, status);
    if (s.last_error) cell.append(el("div", { class: "muted" }, s.last_error));
    if (s.failing_for_s !== null) failing += 1;
    row.append(cell, el("td", { class: "num" }, s.backlog === null ? "?" : String(s.backlog)),
               el("td", {}, s.last_write ? ago(s.last_write) : "–"));
    body.append(row);
  }
  if (!state.sinks.length) {
    const row = el("tr");
    row.append(el("td", { colspan: "4", class: "muted" }, "no sinks configured"));
    body.append(row);
  }
  const facts = document.getElementById("facts");
  facts.replaceChildren();
  const add = (k, v) => facts.append(el("dt", {}, k), el("dd", {}, v));
  add("Version", state.version);
  add("Up for", duration(state.uptime_s));
  add("Journal", bytes(state.journal_bytes));
  for (const m of state.meters) {
    add("Input of " + m.name, (m.input || "?") + (m.input_why ? " (" + m.input_why + ")" : ""));
  }
  const ok = state.monitor_running && failing === 0;
  document.getElementById("health").className = "dot " + (ok ? "ok" : "bad");
  document.getElementById("summary").textContent = !state.monitor_running
    ? "the monitor has stopped" : failing ? failing + " sink(s) failing" : "counting";
}

async function refreshState() {
  try {
    state = await getJSON("/api/state");
    fillMeterChoices();
    renderMeters();
    renderService();
  } catch (err) {
    document.getElementById("summary").textContent = "cannot reach power (" + err.message + ")";
    document.getElementById("health").className = "dot bad";
  }
}

function fillMeterChoices() {
  for (const id of ["chart-meter", "sensor-meter"]) {
    const select = document.getElementById(id);
    if (select.options.length === state.meters.length) continue;
    select.replaceChildren(...state.meters.map((m) => el("option", { value: m.name }, m.name)));
    select.hidden = state.meters.length < 2;
  }
}

// Events -------------------------------------------------------------------

function listen() {
  const source = new EventSource("/events");
  source.addEventListener("reading", (e) => {
    const r = JSON.parse(e.data);
    live[r.meter] = r;
    const card = document.getElementById("meter-" + r.meter);
    const m = meterOf(r.meter);
    if (card && m) {
      showPower(card, m, r.power_w, r.estimate, r.time);
      if (r.today_kwh !== null) showTotals(card, m, r);
    }
  });
}

// Charts -------------------------------------------------------------------

function axes(box, w, h, top, label) {
  box.append(svg("line", { class: "axis", x1: 0, y1: h, x2: w, y2: h }));
  const t = svg("text", { x: 2, y: 10 });
  t.textContent = label + " " + top;
  box.append(t);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawDay(data) {
  const w = 600, h = 180;
  const box = svg("svg", { viewBox: `0 0 ${w} ${h + 14}`, preserveAspectRatio: "none", role: "img" });
  const rows = data.rows;
  const top = niceMax(Math.max(0, ...rows.map((r) => r[2] || 0)));
  const x = (i) => (i / rows.length) * w;
  const y = (v) => h - (v / top) * (h - 14);
  let path = "", area = "", from = null;
  rows.forEach((r, i) => {
    if (r[2] === null) return; // before the first pulse known
    if (from === null) from = i;
    path += (path ? "L" : "M") + x(i).toFixed(1) + "," + y(r[2]).toFixed(1) + "H" + x(i + 1).toFixed(1);
  });
  if (path) {
    area = path + `V${h}H${x(from).toFixed(1)}Z`;
    box.append(svg("path", { class: "area", d: area }), svg("path", { class: "line", d: path }));
  }
  for (let i = 0; i < rows.length; i += 36) {
    const t = svg("text", { x: x(i) + 2, y: h + 12 });
    t.textContent = new Date(rows[i][0] * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    box.append(t);
  }
  const what = data.rate_unit === "W" ? "power" : "flow";
  axes(box, w, h, rate(top, data.rate_unit) + " " + data.rate_unit, "mean " + what + ", max");
  const total = rows.reduce((a, r) => a + (r[1] || 0), 0);
  document.getElementById("chart-caption").textContent =
    `Mean ${what} per ${data.bucket_s / 60} minutes (${data.rate_unit === "W" ? "energy" : "volume"} over time), ` +
    `last 24 hours: ${kwh(total)} ${data.unit}`;
  return box;
}

function drawMonth(data) {
  const w = 600, h = 180;
  const box = svg("svg", { viewBox: `0 0 ${w} ${h + 14}`, preserveAspectRatio: "none", role: "img" });
  const rows = data.rows;
  const exports = data.columns.includes("export_kwh"); // a fourth column
  const top = niceMax(Math.max(0, ...rows.map((r) => Math.max(r[1] || 0, exports ? r[3] || 0 : 0))));
  const bw = w / rows.length;
  const unit = data.unit;
  rows.forEach((r, i) => {
    const day = new Date(r[0] * 1000).toLocaleDateString();
    const width = exports ? Math.max(1, bw / 2 - 1) : Math.max(1, bw - 2);
    if (r[1] !== null) { // null: before the first pulse known
      const bh = (r[1] / top) * (h - 14);
      const bar = svg("rect", { class: "bar", x: i * bw + 1, y: h - bh, width: width, height: bh });
      const tip = svg("title");
      tip.textContent = day + ": " + kwh(r[1]) + " " + unit + (exports ? " in" : "") +
        ", mean " + rate(r[2], data.rate_unit) + " " + data.rate_unit;
      bar.append(tip);
      box.append(bar);
    }
    if (exports && r[3] !== null) {
      const bh = (r[3] / top) * (h - 14);
      const bar = svg("rect", { class: "bar export", x: i * bw + 1 + width, y: h - bh, width: width, height: bh });
      const tip = svg("title");
      tip.textContent = day + ": " + kwh(r[3]) + " " + unit + " out";
      bar.append(tip);
      box.append(bar);
    }
    if (i % 5 === 0) {
      const t = svg("text", { x: i * bw + 1, y: h + 12 });
      t.textContent = new Date(r[0] * 1000).toLocaleDateString([], { day: "numeric", month: "short" });
      box.append(t);
    }
  });
  const what = unit === "kWh" ? "energy" : "volume";
  axes(box, w, h, kwh(top, 1) + " " + unit, what + " per day, max");
  const total = rows.reduce((a, r) => a + (r[1] || 0), 0);
  let caption = `${what === "energy" ? "Energy" : "Volume"} per day, last 30 days: ${kwh(total, 1)} ${unit}`;
  if (exports) {
    caption += `; exported ${kwh(rows.reduce((a, r) => a + (r[3] || 0), 0), 1)} ${unit} (the second bar)`;
  }
  document.getElementById("chart-caption").textContent = caption;
  return box;
}

function drawRejects(data) {
  const w = 600, h = 70;
  const box = svg("svg", { viewBox: `0 0 ${w} ${h + 14}`, preserveAspectRatio: "none", role: "img" });
  const rows = data.rejected || [];
  const now = Date.now() / 1000;
  const top = niceMax(Math.max(1, ...rows.map((r) => r[1] + r[2] + r[3])));
  const bw = w / 24;
  for (const r of rows) {
    const i = 23 - Math.floor((now - r[0]) / 3600);
    if (i < 0 || i > 23) continue;
    let base = h;
    for (const [n, cls, what] of [[r[1], "bar", "glitches"], [r[3], "bar ghost", "ghosts"], [r[2], "bar ghost", "implausible"]]) {
      if (!n) continue;
      const bh = (n / top) * (h - 14);
      const bar = svg("rect", { class: cls, x: i * bw + 1, y: base - bh, width: bw - 2, height: bh });
      const tip = svg("title");
      tip.textContent = new Date(r[0] * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + ": " + n + " " + what;
      bar.append(tip);
      box.append(bar);
      base -= bh;
    }
  }
  axes(box, w, h, String(top), rows.length ? "per hour, max" : "none in the last 24 hours; max");
  return box;
}

async function refreshChart() {
  const meter = document.getElementById("chart-meter").value;
  if (!meter) return;
  try {
    const data = await getJSON(`/api/history?meter=${encodeURIComponent(meter)}&span=${span}`);
    document.getElementById("chart").replaceChildren(span === "day" ? drawDay(data) : drawMonth(data));
    if (span === "day") document.getElementById("rejects").replaceChildren(drawRejects(data));
    const m = meterOf(meter);
    document.getElementById("rejects-title").textContent = m && m.register
      ? "Frames kept out per hour (unusable, implausible)" : "Rejected edges per hour";
  } catch (err) {
    document.getElementById("chart-caption").textContent = "cannot load the chart (" + err.message + ")";
  }
}

function choose(which) {
  span = which;
  document.getElementById("tab-day").setAttribute("aria-selected", String(which === "day"));
  document.getElementById("tab-month").setAttribute("aria-selected", String(which === "month"));
  refreshChart();
}

// Sensor -------------------------------------------------------------------

async function refreshSensor() {
  const meter = document.getElementById("sensor-meter").value;
  if (!meter) return;
  let data;
  try {
    data = await getJSON(`/api/sensor?meter=${encodeURIComponent(meter)}`);
  } catch (err) {
    return;
  }
  document.getElementById("edge-view").hidden = !!data.register;
  document.getElementById("frame-view").hidden = !data.register;
  if (data.register) {
    showFrames(data);
    return;
  }
  const l = data.limits;
  document.getElementById("limits").textContent =
    `Flashes count from ${l.min_pulse_ms} to ${l.max_pulse_ms || "any"} ms wide; ` +
    `edges within ${l.debounce_ms} ms are bounces; above ${watts(l.max_power_w)} W is implausible.`;
  const w = 600, h = 70;
  const box = svg("svg", { viewBox: `0 0 ${w} ${h + 14}`, preserveAspectRatio: "none", role: "img" });
  const top = niceMax(Math.max(1, ...data.histogram.map((b) => b[1])));
  const bw = w / Math.max(1, data.histogram.length);
  data.histogram.forEach(([name, n], i) => {
    const bh = (n / top) * (h - 14);
    const bar = svg("rect", { class: "bar", x: i * bw + 1, y: h - bh, width: bw - 2, height: bh, "data-bucket": name, "data-count": n });
    const tip = svg("title");
    tip.textContent = name + ": " + n;
    bar.append(tip);
    const t = svg("text", { x: i * bw + 2, y: h + 12 });
    t.textContent = name.replace(" ms", "");
    box.append(bar, t);
  });
  document.getElementById("histogram").replaceChildren(box);
  const body = document.querySelector("#edges tbody");
  const rows = data.edges.slice().reverse().map((e) => {
    const row = el("tr");
    row.append(el("td", {}, clock(e[0])), el("td", {}, e[1]),
               el("td", { class: "num" }, e[2] === null ? "" : e[2].toFixed(1) + " ms"),
               el("td", { class: "num" }, e[3] === null ? "" : e[3].toFixed(3) + " s"),
               el("td", {}, e[4]),
               el("td", { class: "num" }, e[5] === null ? "" : watts(e[5]) + " W"));
    return row;
  });
  if (!rows.length) {
    const row = el("tr");
    row.append(el("td", { colspan: "6", class: "muted" }, "no edge yet"));
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

// A meter read from its register: the last frames, and why one was not used.
function showFrames(data) {
  const c = data.counts;
  document.getElementById("limits").textContent =
    `Frames read from the meter's register; a total that goes down or rises faster than ` +
    `${rate(data.limits.max_power_w, data.rate_unit)} ${data.rate_unit} allows is implausible.`;
  document.getElementById("frame-counts").textContent =
    `${c.good} good, ${c.unusable} unusable, ${c.implausible} implausible since the start`;
  const total = (v) => (v === null ? "" : kwh(v) + " " + data.unit);
  const rows = data.frames.slice().reverse().map((f) => {
    const row = el("tr", { class: f[4] === "good" ? "" : "bad" });
    row.append(el("td", {}, clock(f[0])), el("td", { class: "num" }, total(f[1])),
               el("td", { class: "num" }, total(f[2])),
               el("td", { class: "num" }, f[3] === null ? "" : rate(f[3], data.rate_unit) + " " + data.rate_unit),
               el("td", {}, f[4]));
    return row;
  });
  if (!rows.length) {
    const row = el("tr");
    row.append(el("td", { colspan: "5", class: "muted" }, "no frame yet"));
    rows.push(row);
  }
  document.querySelector("#frames tbody").replaceChildren(...rows);
}

// Start --------------------------------------------------------------------

async function start() {
  document.getElementById("tab-day").addEventListener("click", () => choose("day"));
  document.getElementById("tab-month").addEventListener("click", () => choose("month"));
  document.getElementById("chart-meter").addEventListener("change", refreshChart);
  document.getElementById("sensor-meter").addEventListener("change", refreshSensor);
  await refreshState();
  listen();
  refreshChart();
  refreshSensor();
  setInterval(refreshState, STATE_EVERY_MS);
  setInterval(refreshChart, CHART_EVERY_MS);
  setInterval(refreshSensor, SENSOR_EVERY_MS);
  setInterval(() => {
    if (!state) return;
    for (const m of state.meters) {
      const r = live[m.name];
      const card = document.getElementById("meter-" + m.name);
      if (card) setField(card, "when", ((r ? r.estimate : m.estimate) ? "estimate: no pulse since " : "") + ago(r ? r.time : m.power_time));
    }
  }, 1000);
}

document.addEventListener("DOMContentLoaded", start);
