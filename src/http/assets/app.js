// The streamstats dashboard: polls the JSON API every few seconds and
// redraws in place. Every value from the service (stream ids, payloads,
// errors) reaches the page as a text node or an attribute value, never as
// markup.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  // Samples kept by the health charts (six minutes at one per refresh).
  const HISTORY = 180;
  const TOP_N = 10;
  const DEAD_LETTERS = 20;
  const NEWEST_MINUTES = 8;
  // events/s is averaged over at least this long: the counter moves in
  // batches, so a 2 s difference alone jitters.
  const RATE_WINDOW_MS = 10000;

  const $ = (id) => document.getElementById(id);

  const state = {
    selected: null,
    // [time ms, events consumed] samples, oldest first.
    consumed: [],
    rate: { xs: [], ys: [] },
    lag: { xs: [], ys: [] },
    refreshes: 0,
    reasonsLoaded: false,
    charts: {},
    // Fixed x ranges (unix seconds) by chart id, else the data's own range.
    ranges: {},
  };

  // An element whose children are nodes or text; attributes are set with
  // setAttribute (values, never markup); "on…" keys add listeners.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const intFmt = new Intl.NumberFormat("en-US");
  const usdFmt = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const fmtInt = (n) => (typeof n === "number" && isFinite(n) ? intFmt.format(n) : "–");
  const fmtUsd = (n) => (typeof n === "number" && isFinite(n) ? usdFmt.format(n) : "–");
  // "2025-12-20T18:01:00Z" → "2025-12-20 18:01:00Z" (the API's times are UTC).
  const fmtTime = (iso) => (typeof iso === "string" ? iso.replace("T", " ") : "–");
  const fmtAge = (s) =>
    typeof s !== "number" || !isFinite(s) ? "never" : s < 120 ? s.toFixed(1) + " s ago" : Math.round(s / 60) + " min ago";

  function showError(id, message) {
    const el = $(id);
    el.textContent = message;
    el.hidden = false;
  }
  function clearError(id) {
    const el = $(id);
    el.textContent = "";
    el.hidden = true;
  }

  // GET `path` as JSON: {ok, status, body}; throws only when the service
  // cannot be reached at all.
  async function getJson(path) {
    let resp;
    try {
      resp = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    } catch (e) {
      throw new Error("cannot reach the service (" + e.message + ")");
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    return { ok: resp.ok, status: resp.status, body };
  }

  function errorOf(r, path) {
    if (r.body && typeof r.body.error === "string") return r.body.error;
    return path + " answered HTTP " + r.status;
  }

  // The Prometheus text format, samples only: [{name, labels, value}].
  function parseProm(text) {
    const samples = [];
    const line_re = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label_re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const line of text.split("\n")) {
      if (line === "" || line[0] === "#") continue;
      const m = line_re.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        for (const l of m[2].matchAll(label_re)) {
          labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
        }
      }
      samples.push({ name: m[1], labels, value: parseFloat(m[3]) });
    }
    return samples;
  }
  const total = (samples, name) =>
    samples.filter((s) => s.name === name).reduce((acc, s) => acc + s.value, 0);
  const byLabel = (samples, name, label) =>
    samples.filter((s) => s.name === name).map((s) => [s.labels[label] || "", s.value]);

  // ---- charts ---------------------------------------------------------

  const haveCharts = () => typeof window.uPlot === "function";

  function makeChart(id, title, series, timeFormat) {
    const el = $(id);
    if (!haveCharts()) return null;
    const axis = { stroke: "#8d98aa", grid: { stroke: "#2a3344" }, ticks: { stroke: "#2a3344" } };
    const utc = (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
    const fmt = window.uPlot.fmtDate(timeFormat);
    const chart = new window.uPlot(
      {
        title,
        width: Math.max(el.clientWidth, 260),
        height: 170,
        tzDate: utc,
        scales: { x: { time: true, range: (u, min, max) => xRange(id, min, max) } },
        legend: { live: false },
        axes: [
          Object.assign({ values: (u, splits) => splits.map((v) => fmt(utc(v))) }, axis),
          Object.assign({ size: 64 }, axis),
        ],
        series: [{}].concat(series),
      },
      [[]].concat(series.map(() => [])),
      el
    );
    state.charts[id] = chart;
    return chart;
  }

  function xRange(id, min, max) {
    if (state.ranges[id]) return state.ranges[id];
    // One point: a minute either side, so the axis still reads as time.
    if (min === max || min === null) return [(min || 0) - 60, (max || 0) + 60];
    return [min, max];
  }

  function setChart(id, data, openCount) {
    const el = $(id);
    el.setAttribute("data-points", String(data[0].length));
    if (openCount !== undefined) el.setAttribute("data-open", String(openCount));
    const chart = state.charts[id];
    if (chart) chart.setData(data);
  }

  function initCharts() {
    if (!haveCharts()) {
      showError("health-error", "the chart library did not load; figures are still shown as numbers");
      return;
    }
    makeChart("chart-rate", "events consumed per second (10 s average)", [
      { label: "events/s", stroke: "#5cc8ff", width: 2 },
    ], "{HH}:{mm}:{ss}");
    makeChart("chart-lag", "consumer lag (messages, all partitions)", [
      { label: "lag", stroke: "#c38cff", width: 2 },
    ], "{HH}:{mm}:{ss}");
    const open = { label: "open (not final)", stroke: "#ffb547", width: 0, paths: () => null, points: { show: true, size: 9, fill: "#ffb547" } };
    makeChart("chart-viewers", "active viewers per minute", [
      { label: "viewers", stroke: "#5cc8ff", width: 2, points: { show: true, size: 4 } },
      Object.assign({}, open),
    ], "{HH}:{mm}");
    makeChart("chart-chat", "chat messages per minute", [
      { label: "chat", stroke: "#3ecf8e", width: 2, points: { show: true, size: 4 } },
      Object.assign({}, open),
    ], "{HH}:{mm}");
    makeChart("chart-donations", "donations per minute (USD)", [
      { label: "USD", stroke: "#ff8fa3", width: 2, points: { show: true, size: 4 } },
      Object.assign({}, open),
    ], "{HH}:{mm}");
    window.addEventListener("resize", () => {
      for (const [id, chart] of Object.entries(state.charts)) {
        chart.setSize({ width: Math.max($(id).clientWidth, 260), height: 170 });
      }
    });
  }

  function pushSample(series, x, y) {
    series.xs.push(x);
    series.ys.push(y);
    if (series.xs.length > HISTORY) {
      series.xs.shift();
      series.ys.shift();
    }
  }

  // ---- pipeline health ------------------------------------------------

  function setValue(id, text, bad) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle("bad", !!bad);
  }

  function fillCounts(tableId, rows, empty) {
    const tbody = $(tableId).tBodies[0];
    const shown = rows.filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    tbody.replaceChildren(
      ...shown.map(([k, v]) => h("tr", null, h("td", { class: "mono" }, k), h("td", { class: "num" }, fmtInt(v))))
    );
    if (shown.length === 0) tbody.append(h("tr", null, h("td", { colspan: 2, class: "muted" }, empty)));
  }

  async function refreshReady() {
    const status = $("status");
    let problems = [];
    try {
      const r = await getJson("/ready");
      if (!r.body || typeof r.body.ready !== "boolean") throw new Error(errorOf(r, "/ready"));
      const b = r.body;
      status.setAttribute("data-ready", String(b.ready));
      status.setAttribute("data-database", b.database ? "up" : "down");
      $("status-text").textContent = b.ready ? "ready" : "not ready";
      problems = Array.isArray(b.problems) ? b.problems.map(String) : [];
      setValue("v-checkpoint", fmtAge(b.last_checkpoint_age_seconds), !b.ready && b.last_checkpoint_age_seconds !== null);
      setValue("v-assigned", fmtInt(b.assigned_partitions), b.assigned_partitions === 0);
    } catch (e) {
      status.setAttribute("data-ready", "false");
      status.setAttribute("data-database", "unknown");
      $("status-text").textContent = "service unreachable";
      problems = [e.message];
    }
    $("problem-list").replaceChildren(...problems.map((p) => h("li", null, p)));
    $("problems").hidden = problems.length === 0;
  }

  async function refreshMetrics() {
    let text;
    try {
      const resp = await fetch("/prometheus", { cache: "no-store" });
      if (!resp.ok) throw new Error("/prometheus answered HTTP " + resp.status);
      text = await resp.text();
    } catch (e) {
      showError("health-error", "pipeline metrics unavailable: " + e.message);
      return;
    }
    clearError("health-error");
    const samples = parseProm(text);
    const now = Date.now();
    const consumed = total(samples, "streamstats_events_consumed_total");
    const seen = state.consumed;
    // A restarted service starts its counter again.
    if (seen.length > 0 && consumed < seen[seen.length - 1][1]) seen.length = 0;
    seen.push([now, consumed]);
    // Keep the newest sample at least RATE_WINDOW_MS old, and all after it.
    while (seen.length > 2 && now - seen[1][0] >= RATE_WINDOW_MS) seen.shift();
    if (seen.length > 1 && now > seen[0][0]) {
      const rate = (consumed - seen[0][1]) / ((now - seen[0][0]) / 1000);
      setValue("v-rate", rate < 10 ? rate.toFixed(1) : fmtInt(Math.round(rate)));
      pushSample(state.rate, now / 1000, rate);
      setChart("chart-rate", [state.rate.xs.slice(), state.rate.ys.slice()]);
    }
    const lag = total(samples, "streamstats_consumer_lag_messages");
    setValue("v-lag", fmtInt(lag));
    pushSample(state.lag, now / 1000, lag);
    setChart("chart-lag", [state.lag.xs.slice(), state.lag.ys.slice()]);
    setValue("v-late", fmtInt(total(samples, "streamstats_events_late_total")));
    setValue("v-rejected", fmtInt(total(samples, "streamstats_events_rejected_total")));
    const restarts = total(samples, "streamstats_actor_restarts_total");
    setValue("v-restarts", fmtInt(restarts), restarts > 0);
    setValue("v-open", fmtInt(total(samples, "streamstats_open_windows")));
    fillCounts("rejected-table", byLabel(samples, "streamstats_events_rejected_total", "reason"), "none rejected");
    fillCounts("restarts-table", byLabel(samples, "streamstats_actor_restarts_total", "actor"), "no restarts");
  }

  // ---- top streams ----------------------------------------------------

  function streamButton(id) {
    return h(
      "button",
      { type: "button", class: "stream-link", title: "show this stream's minutes", onclick: () => select(id) },
      h("span", { class: "stream-id" }, id)
    );
  }

  async function refreshTop() {
    const minutes = $("top-minutes").value;
    const by = $("top-by").value;
    const path = "/streams/top?minutes=" + encodeURIComponent(minutes) + "&by=" + encodeURIComponent(by) + "&n=" + TOP_N;
    const tbody = $("top-table").tBodies[0];
    let r;
    try {
      r = await getJson(path);
    } catch (e) {
      tbody.classList.add("stale");
      showError("top-error", e.message);
      return;
    }
    if (!r.ok || !r.body || !Array.isArray(r.body.rows)) {
      tbody.classList.add("stale");
      showError("top-error", errorOf(r, "/streams/top") + (tbody.rows.length ? " (showing the last answer)" : ""));
      return;
    }
    clearError("top-error");
    tbody.classList.remove("stale");
    for (const th of $("top-table").tHead.rows[0].cells) {
      th.classList.toggle("ranked", th.getAttribute("data-by") === by);
    }
    const rows = r.body.rows;
    tbody.replaceChildren(
      ...rows.map((row, i) =>
        h(
          "tr",
          { class: row.stream_id === state.selected ? "selected" : null, "data-rank": i + 1 },
          h("td", { class: "num" }, i + 1),
          h("td", null, streamButton(row.stream_id)),
          h("td", { class: "num" }, fmtInt(row.active_viewers)),
          h("td", { class: "num" }, fmtInt(row.chat_messages)),
          h("td", { class: "num" }, fmtUsd(row.donations_usd))
        )
      )
    );
    if (rows.length === 0) {
      tbody.append(h("tr", null, h("td", { colspan: 5, class: "muted" }, "no windows yet")));
    }
    $("top-note").textContent = r.body.latest_window_start
      ? "Windows of the " + minutes + " minutes up to " + fmtTime(r.body.latest_window_start) + "; click a stream for its minutes."
      : "";
    if (state.selected === null && rows.length > 0) select(rows[0].stream_id);
  }

  // ---- one stream -----------------------------------------------------

  function select(id) {
    state.selected = id;
    history.replaceState(null, "", "#stream=" + encodeURIComponent(id));
    const tbody = $("top-table").tBodies[0];
    for (const tr of tbody.rows) {
      const span = tr.querySelector(".stream-id");
      tr.classList.toggle("selected", !!span && span.textContent === id);
    }
    refreshStream();
  }

  async function refreshStream() {
    const id = state.selected;
    if (id === null) return;
    $("stream-title").textContent = id;
    let r;
    try {
      r = await getJson("/streams/" + encodeURIComponent(id) + "/minutes");
    } catch (e) {
      showError("stream-error", e.message);
      return;
    }
    if (id !== state.selected) return;
    if (!r.ok || !r.body || !Array.isArray(r.body.rows)) {
      showError("stream-error", errorOf(r, "/streams/{id}/minutes"));
      return;
    }
    clearError("stream-error");
    const rows = r.body.rows;
    const xs = rows.map((m) => Date.parse(m.window_start) / 1000);
    const open = rows.filter((m) => !m.is_final).length;
    const range = [Date.parse(r.body.from) / 1000, Date.parse(r.body.to) / 1000];
    for (const id of ["chart-viewers", "chart-chat", "chart-donations"]) state.ranges[id] = range;
    const series = (field) => [
      xs,
      rows.map((m) => m[field]),
      rows.map((m) => (m.is_final ? null : m[field])),
    ];
    setChart("chart-viewers", series("active_viewers"), open);
    setChart("chart-chat", series("chat_messages"), open);
    setChart("chart-donations", series("donations_usd"), open);
    $("stream-range").textContent =
      fmtTime(r.body.from) + " to " + fmtTime(r.body.to) + ": " + rows.length + (rows.length === 1 ? " minute, " : " minutes, ") +
      (open === 0 ? "all final." : open + " still open (not final, may change).");
    const newest = rows.slice(-NEWEST_MINUTES).reverse();
    $("minutes-table").tBodies[0].replaceChildren(
      ...newest.map((m) =>
        h(
          "tr",
          { "data-final": String(m.is_final) },
          h("td", { class: "mono minute" }, fmtTime(m.window_start)),
          h("td", { class: "num" }, fmtInt(m.active_viewers)),
          h("td", { class: "num" }, fmtInt(m.chat_messages)),
          h("td", { class: "num" }, fmtUsd(m.donations_usd)),
          h("td", null, m.is_final ? h("span", { class: "badge final" }, "final") : h("span", { class: "badge open" }, "open"))
        )
      )
    );
  }

  // ---- dead letters ---------------------------------------------------

  async function refreshDeadLetters() {
    const reason = $("dl-reason").value;
    const path = "/dead_letters?limit=" + DEAD_LETTERS + (reason ? "&reason=" + encodeURIComponent(reason) : "");
    const tbody = $("dl-table").tBodies[0];
    let r;
    try {
      r = await getJson(path);
    } catch (e) {
      tbody.classList.add("stale");
      showError("dl-error", e.message);
      return;
    }
    if (!r.ok || !r.body || !Array.isArray(r.body.rows)) {
      tbody.classList.add("stale");
      showError("dl-error", errorOf(r, "/dead_letters"));
      return;
    }
    clearError("dl-error");
    tbody.classList.remove("stale");
    if (!state.reasonsLoaded && Array.isArray(r.body.reasons)) {
      $("dl-reason").append(...r.body.reasons.map((x) => h("option", { value: x }, x)));
      state.reasonsLoaded = true;
    }
    tbody.replaceChildren(
      ...r.body.rows.map((d) =>
        h(
          "tr",
          { "data-id": d.id },
          h("td", { class: "mono" }, fmtTime(d.received_at)),
          h("td", { class: "mono" }, d.reason),
          h("td", { class: "mono" }, d.topic + " / " + d.partition + " @ " + d.offset),
          h("td", null, d.error),
          h(
            "td",
            null,
            h("pre", { class: "payload" }, d.payload),
            d.payload_truncated ? h("span", { class: "truncated" }, "first bytes of " + fmtInt(d.payload_bytes)) : null
          )
        )
      )
    );
    if (r.body.rows.length === 0) {
      tbody.append(h("tr", null, h("td", { colspan: 5, class: "muted" }, "no dead letters")));
    }
  }

  // ---- refresh loop ---------------------------------------------------

  async function tick() {
    await Promise.allSettled([refreshReady(), refreshMetrics(), refreshTop(), refreshStream(), refreshDeadLetters()]);
    state.refreshes += 1;
    $("page").setAttribute("data-refreshes", String(state.refreshes));
    $("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    setTimeout(tick, REFRESH_MS);
  }

  function start() {
    const m = /^#stream=(.+)$/.exec(window.location.hash);
    if (m) {
      try {
        state.selected = decodeURIComponent(m[1]);
      } catch (_) {
        state.selected = null;
      }
    }
    initCharts();
    $("top-minutes").addEventListener("change", refreshTop);
    $("top-by").addEventListener("change", refreshTop);
    $("dl-reason").addEventListener("change", refreshDeadLetters);
    tick();
  }

  start();
})();
