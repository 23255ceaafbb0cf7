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
      const f = el("div", { class: "figure" });
      f.append(el("span", { class: "muted" }, label), el("b", { "data-field": field }),
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

function showPower(card, power, estimate, t) {
  const node = card.querySelector('[data-field="power"]');
  node.textContent = (estimate && power !== null ? "≤ " : "") + watts(power) + " ";
  node.append(el("small", {}, "W"));
  node.setAttribute("data-watts", power === null ? "" : String(power));
  setField(card, "when", (estimate ? "estimate: no pulse since " : "") + ago(t));
}

function showTotals(card, r) {
  for (const [field, value] of [["today", r.today_kwh], ["month", r.month_kwh]]) {
    setField(card, field, kwh(value) + " kWh");
    const cost = state.tariff === null || value === null ? null : money(value * state.tariff);
    setField(card, field + "-note", cost || "");
  }
}

function renderMeters() {
  for (const m of state.meters) {
    const card = meterCard(m);
    const r = live[m.name];
    if (r) showPower(card, r.power_w, r.estimate, r.time);
    else showPower(card, m.power_w, m.estimate, m.power_time);
    showTotals(card, r && r.today_kwh !== null ? r : m);
    setField(card, "total", kwh(m.energy_kwh) + " kWh");
    setField(card, "total-note", "pulse " + m.committed_pulses);
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
    if (card) {
      showPower(card, r.power_w, r.estimate, r.time);
      if (r.today_kwh !== null && state) showTotals(card, r);
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
  axes(box, w, h, watts(top) + " W", "mean power, max");
  const total = rows.reduce((a, r) => a + (r[1] || 0), 0);
  document.getElementById("chart-caption").textContent =
    `Mean power per ${data.bucket_s / 60} minutes (energy over time), last 24 hours: ${kwh(total)} kWh`;
  return box;
}

function drawMonth(data) {
  const w = 600, h = 180;
  const box = svg("svg", { viewBox: `0 0 ${w} ${h + 14}`, preserveAspectRatio: "none", role: "img" });
  const rows = data.rows;
  const top = niceMax(Math.max(0, ...rows.map((r) => r[1] || 0)));
  const bw = w / rows.length;
  rows.forEach((r, i) => {
    if (r[1] === null) return; // before the first pulse known
    const bh = (r[1] / top) * (h - 14);
    const bar = svg("rect", { class: "bar", x: i * bw + 1, y: h - bh, width: Math.max(1, bw - 2), height: bh });
    const tip = svg("title");
    tip.textContent = new Date(r[0] * 1000).toLocaleDateString() + ": " + kwh(r[1]) + " kWh, mean " + watts(r[2]) + " W";
    bar.append(tip);
    box.append(bar);
    if (i % 5 === 0) {
      const t = svg("text", { x: i * bw + 1, y: h + 12 });
      t.textContent = new Date(r[0] * 1000).toLocaleDateString([], { day: "numeric", month: "short" });
      box.append(t);
    }
  });
  axes(box, w, h, kwh(top, 1) + " kWh", "energy per day, max");
  const total = rows.reduce((a, r) => a + (r[1] || 0), 0);
  document.getElementById("chart-caption").textContent =
    `Energy per day, last 30 days: ${kwh(total, 1)} kWh`;
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
