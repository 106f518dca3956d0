// The dashboard's pages: a hash route each, drawn from the JSON endpoints, drawn again
// whenever /api/stream says the link's state changed.
"use strict";

const main = document.getElementById("main");
const PHASES = ["train", "evaluate", "server"];
const ENDED = new Set(["finished", "failed", "stopped"]);
let me = { accounts: false, name: "anonymous", may_stop: true };
let refresh = null;  // redraws the current page with fresh data, or null
let drawing = false;
let stream = null;

// -- helpers ---------------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "onclick" || key === "onchange" || key === "onsubmit" || key === "oninput") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// Replaces the page's content with ``children`` (null ones left out).
function show(...children) {
  main.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) {
    throw new HttpError(response.status, (body && body.error) || response.statusText);
  }
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify(body || {}),
  });
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toLocaleString();
}

function ago(seconds) {
  if (!seconds) return "";
  const delta = Math.max(0, Date.now() / 1000 - seconds);
  if (delta < 60) return `${Math.round(delta)} s ago`;
  if (delta < 3600) return `${Math.round(delta / 60)} min ago`;
  return when(seconds);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

function bytes(count) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = count, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${formatNumber(value)} ${units[unit]}`;
}

function metricText(metrics) {
  const parts = [];
  for (const phase of PHASES) {
    for (const [name, value] of Object.entries((metrics || {})[phase] || {})) {
      if (name !== "num-examples" && typeof value === "number") {
        parts.push(`${phase} ${name} ${formatNumber(value)}`);
      }
    }
  }
  return parts.join(", ");
}

// Every numeric metric of a run's rounds: "phase name" -> [[round, value], ...].
function metricSeries(rounds) {
  const series = new Map();
  for (const data of rounds) {
    for (const phase of PHASES) {
      for (const [name, value] of Object.entries(data[phase] || {})) {
        if (name === "num-examples" || typeof value !== "number") continue;
        const key = `${phase} ${name}`;
        if (!series.has(key)) series.set(key, []);
        series.get(key).push([data.round, value]);
      }
    }
  }
  return series;
}

function statusBadge(status) {
  return el("span", { class: `status ${status}` }, status);
}

function showError(error) {
  if (error instanceof HttpError && error.status === 401) {
    drawLogin();
    return;
  }
  show(el("p", { class: "error" }, String(error.message || error)));
}

// -- who is looking --------------------------------------------------------------------

// A page that needs a link, shown by `corolla dashboard` over local runs.
function drawNeedsLink(what) {
  refresh = null;
  show(el("h1", {}, what),
    el("p", { class: "empty needs-link" }, `${what} need a link: local runs have no nodes, `,
      "events or traffic. Start a link with --dashboard-address to see them."));
}

async function loadMe() {
  me = await api("/api/me");
  const who = document.getElementById("who");
  const notice = document.getElementById("notice");
  document.querySelectorAll('nav a[data-page="nodes"], nav a[data-page="federation"]')
    .forEach((a) => { a.hidden = Boolean(me.local); });
  if (me.local) {
    who.replaceChildren(el("span", { class: "open" }, "local runs"));
    notice.hidden = false;
    notice.textContent = `The runs in ${me.runs}, as corolla run wrote them. Nodes, the ` +
      "federation, participation, events and stopping a run need a link.";
  } else if (!me.accounts) {
    who.replaceChildren(el("span", { class: "open" }, "no accounts"));
    notice.hidden = false;
    notice.textContent = "This link has no accounts (it was started without --auth): anyone " +
      "who reaches this page can see its runs and stop them, as with its Control API.";
  } else if (me.name) {
    notice.hidden = true;
    who.replaceChildren(
      el("span", {}, `${me.name} (${me.role})`), " ",
      el("button", { class: "link", onclick: logout }, "log out"));
  } else {
    notice.hidden = true;
    who.replaceChildren();
  }
}

async function logout() {
  await post("/api/logout");
  await loadMe();
  drawLogin();
}

function drawLogin(message) {
  refresh = null;
  const name = el("input", { name: "name", autocomplete: "username", required: true });
  const password = el("input", {
    name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const problem = el("p", { class: "error" }, message || "");
  const form = el("form", {
    class: "login",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await post("/api/login", { name: name.value, password: password.value });
      } catch (error) {
        problem.textContent = error.message;
        return;
      }
      await loadMe();
      startStream();
      route();
    },
  },
  el("h2", {}, "Log in"),
  el("p", {}, "Use your account on this link (as with corolla login)."),
  el("label", {}, "Account ", name),
  el("label", {}, "Password ", password),
  el("button", { type: "submit" }, "Log in"),
  problem);
  show(form);
}

// -- runs ------------------------------------------------------------------------------

const runsQuery = { sort: "created", desc: "1", status: "", q: "", offset: 0, limit: 50 };
const selected = new Set();

const RUN_COLUMNS = [
  ["", null], ["run", "run_id"], ["status", "status"], ["app", "app"], ["by", "by"],
  ["started", "created"], ["duration", "duration"], ["rounds", null], ["final metrics", null],
];

const LOCAL_RUN_COLUMNS = [
  ["", null], ["run", "run_id"], ["status", "status"], ["app", "app"], ["nodes", "nodes"],
  ["backend", "backend"], ["started", "created"], ["duration", "duration"], ["rounds", null],
  ["final metrics", null],
];

async function drawRuns() {
  const params = new URLSearchParams(runsQuery);
  const data = await api(`/api/runs?${params}`);
  const head = el("tr", {}, (me.local ? LOCAL_RUN_COLUMNS : RUN_COLUMNS).map(([title, key]) => {
    if (!key) return el("th", {}, title);
    const arrow = runsQuery.sort === key ? (runsQuery.desc === "1" ? " ▾" : " ▴") : "";
    return el("th", {
      class: "sortable", dataset: { sort: key },
      onclick: () => {
        if (runsQuery.sort === key) runsQuery.desc = runsQuery.desc === "1" ? "0" : "1";
        else { runsQuery.sort = key; runsQuery.desc = "1"; }
        drawRuns().catch(showError);
      },
    }, title + arrow);
  }));
  const rows = data.runs.map((run) => el("tr", { dataset: { runId: run.run_id } },
    el("td", {}, el("input", {
      type: "checkbox", checked: selected.has(run.run_id), "aria-label": "compare",
      onchange: (event) => {
        if (event.target.checked) selected.add(run.run_id); else selected.delete(run.run_id);
        compareButton.disabled = selected.size < 2;
      },
    })),
    el("td", {}, el("a", { href: `#/runs/${run.run_id}` }, run.run_id)),
    el("td", { class: "status-cell" }, statusBadge(run.status)),
    el("td", {}, run.app),
    me.local ? [el("td", {}, run.nodes), el("td", {}, run.backend || (run.link ? `link ${run.link}` : ""))]
      : el("td", {}, run.by),
    el("td", {}, when(run.started || run.created)),
    el("td", {}, duration(run.duration)),
    el("td", { class: "rounds" },
      `${run.rounds_done}${run.num_rounds ? ` / ${run.num_rounds}` : ""}`),
    el("td", { class: "metrics" }, metricText(run.metrics) || (run.error ? run.error : ""))));
  const search = el("input", {
    type: "search", placeholder: "app or submitter", value: runsQuery.q, "aria-label": "filter",
    onchange: (event) => { runsQuery.q = event.target.value; runsQuery.offset = 0; drawRuns().catch(showError); },
  });
  const status = el("select", {
    "aria-label": "status",
    onchange: (event) => { runsQuery.status = event.target.value; runsQuery.offset = 0; drawRuns().catch(showError); },
  }, (me.local ? ["", "finished", "unreadable"]
    : ["", "pending", "starting", "running", "finished", "failed", "stopped"]).map(
    (s) => el("option", { value: s, selected: s === runsQuery.status }, s || "any status")));
  const compareButton = el("button", {
    disabled: selected.size < 2,
    onclick: () => { location.hash = `#/compare?runs=${[...selected].join(",")}`; },
  }, "Compare selected");
  const first = runsQuery.offset + 1, last = runsQuery.offset + data.runs.length;
  const pager = el("div", { class: "pager" },
    el("button", {
      disabled: runsQuery.offset === 0,
      onclick: () => { runsQuery.offset = Math.max(0, runsQuery.offset - runsQuery.limit); drawRuns().catch(showError); },
    }, "◂ newer"),
    ` ${data.total ? `${first}–${last}` : "0"} of ${data.total} `,
    el("button", {
      disabled: last >= data.total,
      onclick: () => { runsQuery.offset += runsQuery.limit; drawRuns().catch(showError); },
    }, "older ▸"));
  show(
    el("h1", {}, "Runs"),
    el("div", { class: "toolbar" }, search, status, compareButton),
    el("table", { class: "runs" }, el("thead", {}, head), el("tbody", {}, rows)),
    data.runs.length ? null : el("p", { class: "empty" }, me.local
      ? `No runs in ${me.runs} yet: corolla run APP writes one there.`
      : "No runs yet: submit one with corolla run --link."),
    pager);
  refresh = drawRuns;
}

// -- a run -----------------------------------------------------------------------------

function runCharts(rounds) {
  const charts = el("div", { class: "charts" });
  for (const [name, points] of metricSeries(rounds)) {
    charts.appendChild(lineChart(name, [{ name, points }]));
  }
  if (!charts.childElementCount) charts.appendChild(el("p", { class: "empty" }, "No round has ended yet."));
  return charts;
}

function roundsTable(rounds) {
  const names = [...metricSeries(rounds).keys()];
  return el("table", { class: "rounds-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "round"), el("th", {}, "trained"),
      el("th", {}, "failed"), el("th", {}, "evaluated"), el("th", {}, "seconds"),
      names.map((n) => el("th", {}, n)))),
    el("tbody", {}, rounds.map((r) => el("tr", { dataset: { round: r.round } },
      el("td", {}, r.round), el("td", {}, r.train_replies), el("td", {}, r.train_failures),
      el("td", {}, r.evaluate_replies), el("td", {}, formatNumber(r.seconds)),
      names.map((n) => {
        const [phase, metric] = [n.slice(0, n.indexOf(" ")), n.slice(n.indexOf(" ") + 1)];
        const value = (r[phase] || {})[metric];
        return el("td", {}, typeof value === "number" ? formatNumber(value) : "");
      })))));
}

function participationMap(runId, map, details) {
  if (!map.rounds.length) return el("p", { class: "empty" }, "No messages sent yet.");
  const header = el("tr", {}, el("th", {}, "nodes \\ round"),
    map.rounds.map((r) => el("th", { class: "round" }, r)));
  const rows = map.bands.map((band, index) => el("tr", {},
    el("th", { class: "band" },
      band.nodes === 1 ? band.first : `${band.first} … ${band.last} (${band.nodes})`),
    map.cells[index].map(([ok, failed, waiting], column) => {
      const sent = ok + failed + waiting;
      const kind = sent === 0 ? "none" : failed ? "failed" : waiting ? "waiting" : "ok";
      return el("td", {
        class: `cell ${kind}`,
        title: sent ? `round ${map.rounds[column]}: ${ok} replied, ${failed} failed, ${waiting} waiting` : "",
        dataset: { round: map.rounds[column], band: String(index), ok: String(ok),
          failed: String(failed), waiting: String(waiting) },
        onclick: failed ? () => showFailures(runId, map.rounds[column], band, details) : null,
      }, failed ? "✕" : "");
    })));
  return el("div", { class: "map" }, el("table", { class: "participation" },
    el("thead", {}, header), el("tbody", {}, rows)));
}

async function showFailures(runId, round, band, details) {
  const params = new URLSearchParams({ round, first: band.first, last: band.last });
  const data = await api(`/api/runs/${runId}/failures?${params}`);
  details.replaceChildren(
    el("h3", {}, `Errors of round ${round}`),
    el("ul", { class: "failures" }, data.failures.map((f) => el("li", {},
      el("strong", {}, `node ${f.node_id}`), ` (${f.type}, code ${f.code}): `,
      el("pre", {}, f.reason)))));
  details.hidden = false;
}

function configTable(config, differs) {
  const keys = Object.keys(config).sort();
  if (!keys.length) return el("p", { class: "empty" }, "No config.");
  return el("table", { class: "config" }, el("tbody", {}, keys.map((key) => el("tr", {
    class: differs && differs.includes(key) ? "differs" : null,
  }, el("th", {}, key), el("td", {}, JSON.stringify(config[key]))))));
}

const runEvents = { runId: null, last: 0, items: [] };
const participationCache = { runId: null, rounds: -1, status: null, at: 0, map: null };

async function drawLocalRun(runId) {
  const run = await api(`/api/runs/${runId}`);
  const facts = [`app ${run.app || "?"}`];
  if (run.link) facts.push(`on the link at ${run.link}`);
  if (typeof run.nodes === "number") facts.push(`${run.nodes} nodes`);
  if (run.backend) facts.push(`backend ${run.backend}`);
  if (run.duration !== null) facts.push(`started ${when(run.started)}`, duration(run.duration));
  else facts.push(`written ${when(run.ended)}`);
  if (!run.error) facts.push(`round ${run.rounds_done}${run.num_rounds ? ` of ${run.num_rounds}` : ""}`);
  show(
    el("h1", {}, `Run ${run.run_id} `, statusBadge(run.status)),
    el("p", { class: "facts" }, facts.join(" · ")),
    run.error ? el("p", { class: "error" }, run.error) : [
      el("div", { class: "actions" },
        el("a", { class: "button", href: `/api/runs/${runId}/history.json`, download: "" }, "history.json"),
        run.arrays.length
          ? el("a", { class: "button", href: `/api/runs/${runId}/arrays.npz`, download: "" },
            `final.npz (${run.arrays.length} arrays)`)
          : null,
        run.report
          ? el("a", { class: "button", href: `/api/runs/${runId}/report.html`, target: "_blank" },
            "report.html")
          : null),
      el("h2", {}, "Metrics"), runCharts(run.rounds),
      el("h2", {}, "Rounds"), roundsTable(run.rounds),
      el("h2", {}, "Config"), configTable(run.config),
      el("p", { class: "legend" }, "Participation and events need a link.")]);
  refresh = () => drawLocalRun(runId);
}

async function drawRun(runId) {
  if (me.local) { await drawLocalRun(runId); return; }
  const run = await api(`/api/runs/${runId}`);
  // The map of a large run is the page's dearest read: again when a round ended, when
  // the run ended, or every 5 s, not at every event.
  const cache = participationCache;
  if (cache.runId !== runId || cache.rounds !== run.rounds_done || cache.status !== run.status ||
      Date.now() - cache.at > 5000) {
    const map = await api(`/api/runs/${runId}/participation`);
    Object.assign(cache, { runId, rounds: run.rounds_done, status: run.status, at: Date.now(), map });
  }
  const map = cache.map;
  if (runEvents.runId !== runId) {
    const tail = await api(`/api/runs/${runId}/events?before=${Number.MAX_SAFE_INTEGER}&limit=200`);
    Object.assign(runEvents, { runId, items: tail.events });
  } else {
    const newer = await api(`/api/runs/${runId}/events?after=${runEvents.last}&limit=500`);
    runEvents.items = runEvents.items.concat(newer.events).slice(-1000);
  }
  runEvents.last = runEvents.items.length ? runEvents.items[runEvents.items.length - 1].seq : 0;
  const details = document.getElementById("failure-details") || el("div", { id: "failure-details", class: "panel", hidden: true });
  const actions = el("div", { class: "actions" },
    el("a", { class: "button", href: `/api/runs/${runId}/history.json`, download: "" }, "history.json"),
    run.arrays.length
      ? el("a", { class: "button", href: `/api/runs/${runId}/arrays.npz`, download: "" },
        `final arrays (${run.arrays.length})`)
      : null,
    !ENDED.has(run.status) && me.may_stop
      ? el("button", { class: "danger", id: "stop", onclick: () => stopRun(runId) }, "Stop run")
      : null);
  const log = el("div", { class: "events" },
    runEvents.items.map((e) => el("div", { class: `event ${e.kind.replace(".", "-")}` }, e.text)));
  show(
    el("h1", {}, `Run ${run.run_id} `, statusBadge(run.status)),
    el("p", { class: "facts" },
      `app ${run.app || "?"} · submitted by ${run.by || "?"} · created ${when(run.created)}`,
      run.duration !== null ? ` · ${duration(run.duration)}` : "",
      ` · round ${run.rounds_done}${run.num_rounds ? ` of ${run.num_rounds}` : ""}`),
    run.error ? el("p", { class: "error" }, run.error) : null,
    actions,
    el("h2", {}, "Metrics"), runCharts(run.rounds),
    el("h2", {}, "Rounds"), roundsTable(run.rounds),
    el("h2", {}, "Participation"),
    el("p", { class: "legend" }, el("span", { class: "cell ok" }), " replied ",
      el("span", { class: "cell failed" }), " failed (click for the errors) ",
      el("span", { class: "cell waiting" }), " no reply yet"),
    participationMap(runId, map, details), details,
    el("h2", {}, "Config"), configTable(run.config),
    el("h2", {}, "Events"), log);
  log.scrollTop = log.scrollHeight;
  refresh = () => drawRun(runId);
}

async function stopRun(runId) {
  if (!window.confirm(`Stop run ${runId}?`)) return;
  try {
    await post(`/api/runs/${runId}/stop`, {});
  } catch (error) {
    window.alert(`The run was not stopped: ${error.message}`);
    return;
  }
  await drawRun(runId);
}

// -- nodes -----------------------------------------------------------------------------

const nodesQuery = { online: "", offset: 0, limit: 100 };

async function drawNodes() {
  const data = await api(`/api/nodes?${new URLSearchParams(nodesQuery)}`);
  const filter = el("select", {
    "aria-label": "online",
    onchange: (event) => { nodesQuery.online = event.target.value; nodesQuery.offset = 0; drawNodes().catch(showError); },
  }, [["", "all nodes"], ["1", "online"], ["0", "offline"]].map(
    ([value, text]) => el("option", { value, selected: value === nodesQuery.online }, text)));
  const last = nodesQuery.offset + data.nodes.length;
  show(
    el("h1", {}, "Nodes"),
    el("div", { class: "toolbar" }, filter),
    el("table", { class: "nodes" },
      el("thead", {}, el("tr", {}, ["node", "status", "last seen", "attributes", "config",
        "runs served", "errors"].map((t) => el("th", {}, t)))),
      el("tbody", {}, data.nodes.map((n) => el("tr", { dataset: { nodeId: n.node_id } },
        el("td", {}, n.node_id),
        el("td", {}, statusBadge(n.online ? "online" : "offline")),
        el("td", {}, ago(n.last_seen)),
        el("td", {}, Object.entries(n.attributes).map(([k, v]) => `${k}=${v}`).join(" ")),
        el("td", {}, Object.entries(n.config).map(([k, v]) => `${k}=${v}`).join(" ")),
        el("td", {}, n.runs_served),
        el("td", { class: n.errors ? "bad" : null }, n.errors))))),
    data.nodes.length ? null : el("p", { class: "empty" }, "No node registered yet."),
    el("div", { class: "pager" },
      el("button", {
        disabled: nodesQuery.offset === 0,
        onclick: () => { nodesQuery.offset = Math.max(0, nodesQuery.offset - nodesQuery.limit); drawNodes().catch(showError); },
      }, "◂"),
      ` ${data.total ? `${nodesQuery.offset + 1}–${last}` : 0} of ${data.total} `,
      el("button", {
        disabled: last >= data.total,
        onclick: () => { nodesQuery.offset += nodesQuery.limit; drawNodes().catch(showError); },
      }, "▸")));
  refresh = drawNodes;
}

// -- compare ---------------------------------------------------------------------------

async function drawCompare(ids) {
  if (ids.length < 2) {
    show(el("h1", {}, "Compare"),
      el("p", {}, "Tick two or more runs on the ", el("a", { href: "#/runs" }, "runs page"),
        " and press Compare selected."));
    refresh = null;
    return;
  }
  const data = await api(`/api/compare?runs=${ids.join(",")}`);
  const names = new Set();
  const perRun = data.runs.map((run) => metricSeries(run.rounds));
  perRun.forEach((series) => series.forEach((_, name) => names.add(name)));
  const charts = el("div", { class: "charts" }, [...names].sort().map((name) => lineChart(name,
    data.runs.map((run, i) => ({ name: `run ${run.run_id}`, points: perRun[i].get(name) || [] })))));
  const keys = [...new Set(data.runs.flatMap((r) => Object.keys(r.config)))].sort();
  const configs = el("table", { class: "config compare" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), data.runs.map((r) => el("th", {},
      el("a", { href: `#/runs/${r.run_id}` }, `run ${r.run_id}`))))),
    el("tbody", {}, keys.map((key) => el("tr", {
      class: data.differs.includes(key) ? "differs" : null, dataset: { key },
    }, el("th", {}, key), data.runs.map((r) => el("td", {},
      key in r.config ? JSON.stringify(r.config[key]) : "—"))))));
  show(
    el("h1", {}, `Compare ${data.runs.length} runs`),
    el("p", {}, data.runs.map((r) => el("span", { class: "chip" }, `run ${r.run_id} `,
      statusBadge(r.status), ` ${r.app}`))),
    charts,
    el("h2", {}, "Configs"),
    el("p", { class: "legend" }, "Rows in color differ between the runs."),
    configs);
  refresh = () => drawCompare(ids);
}

// -- the federation --------------------------------------------------------------------

async function drawFederation() {
  const data = await api("/api/federation");
  const samples = data.samples;
  const t0 = samples.length ? samples[0].time : 0;
  const directions = samples.length ? Object.keys(samples[samples.length - 1].bytes) : [];
  const rate = directions.map((direction) => ({
    name: direction.replace("_", " "),
    points: samples.slice(1).map((s, i) => {
      const before = samples[i];
      const seconds = s.time - before.time;
      return [s.time - t0, seconds > 0 ? (s.bytes[direction] - before.bytes[direction]) / seconds : 0];
    }),
  }));
  const nodes = [
    { name: "online", points: samples.map((s) => [s.time - t0, s.nodes_online]) },
    { name: "registered", points: samples.map((s) => [s.time - t0, s.nodes]) },
  ];
  const last = samples.length ? samples[samples.length - 1] : null;
  const options = { width: 640, height: 240, xLabel: "seconds", noDots: true };
  show(
    el("h1", {}, "Federation"),
    el("p", { class: "facts" },
      `${data.totals.nodes_online} of ${data.totals.nodes} nodes online · runs: `,
      Object.entries(data.totals.runs).map(([s, n]) => `${n} ${s}`).join(", ") || "none"),
    last ? el("table", { class: "traffic" },
      el("thead", {}, el("tr", {}, ["direction", "moved", "busy", "throughput while busy"].map(
        (t) => el("th", {}, t)))),
      el("tbody", {}, Object.keys(last.bytes).map((d) => el("tr", {}, el("td", {}, d.replace("_", " ")),
        el("td", {}, bytes(last.bytes[d])), el("td", {}, duration(last.busy_s[d])),
        el("td", {}, last.busy_s[d] > 0 ? `${bytes(last.bytes[d] / last.busy_s[d])}/s` : ""))))) : null,
    el("div", { class: "charts" },
      lineChart("array traffic (bytes/s)", rate, Object.assign({ format: bytes }, options)),
      lineChart("nodes", nodes, options)),
    el("p", { class: "legend" }, "Sampled every few seconds since the dashboard started."));
  refresh = drawFederation;
}

// -- routing and live updates ----------------------------------------------------------

async function route() {
  const hash = location.hash || "#/runs";
  const [path, query] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === parts[0]));
  if (me.accounts && !me.name) { drawLogin(); return; }
  refresh = null;
  try {
    if (parts[0] === "runs" && parts[1]) await drawRun(parts[1]);
    else if (me.local && parts[0] === "nodes") drawNeedsLink("Nodes");
    else if (me.local && parts[0] === "federation") drawNeedsLink("The federation's pages");
    else if (parts[0] === "nodes") await drawNodes();
    else if (parts[0] === "compare") {
      const ids = (new URLSearchParams(query || "").get("runs") || "").split(",").filter(Boolean);
      await drawCompare(ids);
    } else if (parts[0] === "federation") await drawFederation();
    else await drawRuns();
  } catch (error) {
    showError(error);
  }
}

async function redraw() {
  if (!refresh || drawing) return;
  drawing = true;
  try { await refresh(); } catch (error) { showError(error); } finally { drawing = false; }
}

// The federation page's traffic is sampled by the dashboard, not stored in the state:
// it is read again every two seconds, changed state or not.
window.setInterval(() => { if (refresh === drawFederation) redraw(); }, 2000);

function startStream() {
  if (stream) stream.close();
  if (!window.EventSource) { window.setInterval(redraw, 1000); return; }
  stream = new EventSource("/api/stream");
  stream.onmessage = redraw;
}

window.addEventListener("hashchange", () => {
  runEvents.runId = null;
  participationCache.runId = null;
  route();
});
window.addEventListener("DOMContentLoaded", async () => {
  try { await loadMe(); } catch (error) { showError(error); return; }
  if (!me.accounts || me.name) startStream();
  route();
});
