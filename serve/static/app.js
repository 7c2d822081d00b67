// AstraDup web page: plain browser JavaScript, no build step.
// Data is only ever put into the page with textContent / attributes, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { result: null, queryUrl: "", queryName: "", selected: -1, interval: -1, objectUrl: "",
                pick: { offset: 0, q: "", total: 0, seq: 0 } };
const PICK_PAGE = 100;  // videos per page of the picker (the server allows up to 1000)
// Interval i has colour i on both bars: the same palette as astradup/timeline.py (a test checks).
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
                 "#469990", "#800000"];
const MAX_DRAWN = 64;  // intervals drawn per pair, as in the report
const MOMENTS = 4;  // intervals per pair with a frame of each side

// ---------------------------------------------------------------- HTTP

function apiKey() { return localStorage.getItem("astradup_key") || ""; }

function setKey(key) {
  localStorage.setItem("astradup_key", key);
  // <video> and <img> requests cannot send headers: the server also accepts this cookie.
  document.cookie = "astradup_key=" + encodeURIComponent(key) + "; path=/; SameSite=Strict";
}

async function api(path, opts = {}, retried = false) {
  const headers = Object.assign({}, opts.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const res = await fetch(path, Object.assign({}, opts, { headers }));
  if (res.status === 401 && !retried) {
    const key = window.prompt("API key for this AstraDup server:");
    if (key) { setKey(key); return api(path, opts, true); }
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) throw new Error((body && body.error) || ("HTTP " + res.status));
  return body;
}

function say(text, isError = false, el = $("message")) {
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const fmt = (x, d = 3) => (x === null || x === undefined ? "-" : Number(x).toFixed(d));
const secs = (x) => Number(x).toFixed(1);

// ---------------------------------------------------------------- search

// The picker shows one page of the library at a time (any size of library), filtered by name.
async function loadVideos() {
  const p = state.pick;
  const seq = ++p.seq;  // a slow answer to an older filter must not overwrite a newer one
  const qs = new URLSearchParams({ status: "ok", limit: String(PICK_PAGE), offset: String(p.offset), q: p.q });
  try {
    const res = await api("/videos?" + qs.toString());
    if (seq !== p.seq) return;
    p.total = res.total;
    const sel = $("pick-video");
    sel.replaceChildren(...res.videos.map((v) =>
      el("option", { value: v.video_id }, `${v.name} (${v.duration ? secs(v.duration) + " s" : "?"})`)));
    if (!res.videos.length) sel.append(el("option", { value: "" }, p.q ? "no video with that name" : "no video"));
    const last = Math.min(p.offset + res.videos.length, res.total);
    $("pick-page").textContent = res.total ? `${p.offset + 1}–${last} of ${res.total}` : "0 of 0";
    $("pick-prev").disabled = p.offset <= 0;
    $("pick-next").disabled = res.next_offset === null || res.next_offset === undefined;
    if (!p.q) $("index-info").textContent = `${res.total} indexed video(s)`;
  } catch (e) { say("Could not list videos: " + e.message, true); }
}

function pickPage(delta) {
  const p = state.pick;
  p.offset = Math.max(0, Math.min(p.offset + delta * PICK_PAGE, Math.max(0, p.total - 1)));
  loadVideos();
}

let filterTimer = 0;
function pickFilter() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    state.pick.q = $("pick-filter").value.trim().slice(0, 200);
    state.pick.offset = 0;
    loadVideos();
  }, 250);
}

function topValue() {
  const n = parseInt($("top").value, 10);
  return Number.isFinite(n) ? Math.min(100, Math.max(1, n)) : 10;
}

async function searchIndexed(videoId, name, selectSource = null) {
  say("Searching…");
  try {
    const res = await api("/search", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ video_id: videoId, top: topValue() }) });
    showResult(res, "/media/" + videoId, name);
    if (selectSource) {
      const i = res.matches.findIndex((m) => m.source_id === selectSource);
      if (i >= 0) selectMatch(i);
    }
  } catch (e) { say("Search failed: " + e.message, true); }
}

async function searchUpload(file) {
  say(`Uploading ${file.name} and searching…`);
  const form = new FormData();
  form.append("file", file);
  form.append("top", String(topValue()));
  try {
    const res = await api("/search", { method: "POST", body: form });
    if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
    state.objectUrl = URL.createObjectURL(file);  // the query plays from the browser's own copy
    showResult(res, state.objectUrl, file.name);
  } catch (e) { say("Search failed: " + e.message, true); }
}

function showResult(res, queryUrl, queryName) {
  state.result = res;
  state.queryUrl = queryUrl;
  state.queryName = queryName;
  state.selected = -1;
  const n = res.matches.length;
  say(n ? `${n} video(s) with copies found in ${secs(res.took_ms / 1000)} s.` : "No copy found in the index.");
  $("results-title").textContent = `Matches for ${queryName}`;
  $("results").replaceChildren(...res.matches.map((m, i) => resultCard(m, i)));
  showCommon(res.common || []);
  $("detail").hidden = true;
  if (n) selectMatch(0);
}

// Content many library videos share (an intro, a sponsor clip): listed once, never as a copy.
function showCommon(common) {
  const p = $("common");
  p.hidden = !common.length;
  p.textContent = common.length ? "Common content, not counted as copying: " + common.map((c) =>
    `${secs(c.q_start)}–${secs(c.q_end)} s (in ${c.videos} library videos)`).join(", ") : "";
}

function resultCard(m, i) {
  const t = m.segments.length ? m.segments[0].s_start : (m.duration || 0) / 2;
  const badges = [el("span", { class: "badge " + m.label }, m.label)];
  if (m.review) badges.push(" ", el("span", { class: "badge review" }, "review"));
  if (m.audio_copy) badges.push(" ", el("span", { class: "badge audio-copy",
    title: `soundtrack copied: ${secs(m.audio_copy.q_start)}-${secs(m.audio_copy.q_end)} s of the query = `
      + `${secs(m.audio_copy.s_start)}-${secs(m.audio_copy.s_end)} s of this video` }, "audio copy"));
  if (m.decision) badges.push(" ", el("span", { class: "badge" }, m.decision));
  return el("li", { class: "result-card", dataset: { sourceId: m.source_id, index: String(i) },
                    onclick: () => selectMatch(i) },
    el("img", { src: `/thumbs/${m.source_id}?t=${secs(t)}`, alt: m.name, loading: "lazy" }),
    el("div", {},
      el("div", { class: "name" }, m.name),
      el("div", {}, ...badges),
      el("div", {}, `score ${fmt(m.fused)} · confidence ${fmt(m.confidence, 2)}`),
      el("div", { class: "muted" },
        Object.entries(m.scores).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(" · ")
        + ` · ${m.segments.length} interval(s)`)));
}

function selectMatch(i) {
  const m = state.result.matches[i];
  state.selected = i;
  document.querySelectorAll(".result-card").forEach(
    (c) => c.classList.toggle("selected", c.dataset.index === String(i)));
  $("detail").hidden = false;
  $("detail-title").textContent = `${state.queryName} ↔ ${m.name} — ${m.label}, score ${fmt(m.fused)}`;
  $("q-name").textContent = state.queryName;
  $("s-name").textContent = m.name;
  setSrc($("query-player"), state.queryUrl);
  setSrc($("source-player"), "/media/" + m.source_id);
  $("intervals").replaceChildren(...m.segments.map((s, j) => el("li", { dataset: { index: String(j) },
      onclick: () => goInterval(j), style: `border-left-color: ${PALETTE[j % PALETTE.length]}` },
    `query ${secs(s.q_start)}–${secs(s.q_end)} s  ↔  source ${secs(s.s_start)}–${secs(s.s_end)} s`
    + `  (score ${fmt(s.score, 2)}${s.modalities.length ? ", " + s.modalities.join("+") : ""})`)));
  if (m.audio_copy) {
    const a = m.audio_copy;
    $("intervals").append(el("li", { class: "muted" },
      `Audio copy (the soundtrack, not the picture): query ${secs(a.q_start)}–${secs(a.q_end)} s  ↔  `
      + `source ${secs(a.s_start)}–${secs(a.s_end)} s`));
  } else if (!m.segments.length) {
    $("intervals").append(el("li", { class: "muted" }, "No aligned interval: a whole-video match."));
  }
  const q = state.result.query || {};
  $("timeline").replaceChildren(timelineSvg(q.duration, m.duration, m.segments, "A: " + state.queryName,
                                            "B: " + m.name));
  $("moments").replaceChildren(...momentFigures(m, q));
  state.interval = -1;
  if (m.segments.length) goInterval(0); else updateNav();
}

// ---------------------------------------------------------------- timeline

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, title) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (title) {
    const t = document.createElementNS(SVG_NS, "title");
    t.textContent = title;
    node.append(t);
  }
  return node;
}

const finite = (x) => typeof x === "number" && Number.isFinite(x);

function barLength(duration, ends) {
  if (finite(duration) && duration > 0) return duration;
  return Math.max(0, ...ends) || 1;
}

function spanTitle(i, s, aLabel, bLabel) {
  return `interval ${i + 1}: ${aLabel} ${secs(s.q_start)}–${secs(s.q_end)} s ↔ `
    + `${bLabel} ${secs(s.s_start)}–${secs(s.s_end)} s (score ${fmt(s.score, 2)})`;
}

// Two bars to scale (A: the query, B: the source); interval i in PALETTE[i] on both, joined by a
// band; each shape has a <title> tooltip and seeks both players when clicked. Layout as
// astradup.timeline.timeline_svg draws it in the report.
function timelineSvg(aDur, bDur, segments, aLabel, bLabel, width = 560) {
  const segs = segments.filter((s) => [s.q_start, s.q_end, s.s_start, s.s_end].every(finite)).slice(0, MAX_DRAWN);
  const da = barLength(aDur, segs.map((s) => s.q_end));
  const db = barLength(bDur, segs.map((s) => s.s_end));
  const M = 2, BAR = 14, LABEL = 16, GAP = 30;
  const scale = (width - 2 * M) / Math.max(da, db);
  const ya = LABEL, yb = LABEL + BAR + GAP, height = yb + BAR + LABEL;
  const x = (t) => M + Math.max(0, t) * scale;
  const w = (t0, t1) => Math.max(2, (t1 - Math.max(0, t0)) * scale);
  const svg = svgEl("svg", { class: "timeline", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": `${aLabel} and ${bLabel}: ${segs.length} copied interval(s)` });
  const text = (y, s) => {
    const t = svgEl("text", { x: M, y, "font-size": 11, fill: "#1d2330" });
    t.textContent = s;
    return t;
  };
  svg.append(text(ya - 4, `${aLabel} · ${secs(da)} s`),
    svgEl("rect", { class: "track track-a", x: M, y: ya, width: da * scale, height: BAR, rx: 3, fill: "#dfe3ec" },
          `${aLabel}: 0–${secs(da)} s`),
    svgEl("rect", { class: "track track-b", x: M, y: yb, width: db * scale, height: BAR, rx: 3, fill: "#dfe3ec" },
          `${bLabel}: 0–${secs(db)} s`),
    text(yb + BAR + LABEL - 4, `${bLabel} · ${secs(db)} s`));
  segs.forEach((s, i) => {
    const a0 = Math.min(s.q_start, da), a1 = Math.min(Math.max(s.q_end, s.q_start), da);
    const b0 = Math.min(s.s_start, db), b1 = Math.min(Math.max(s.s_end, s.s_start), db);
    const xa = x(a0), wa = w(a0, a1), xb = x(b0), wb = w(b0, b1);
    const c = PALETTE[i % PALETTE.length], title = spanTitle(i, s, aLabel, bLabel);
    const shapes = [
      svgEl("polygon", { class: "band", "data-index": i, fill: c, "fill-opacity": 0.22,
        points: `${xa},${ya + BAR} ${xa + wa},${ya + BAR} ${xb + wb},${yb} ${xb},${yb}` }, title),
      svgEl("rect", { class: "iv iv-a", "data-index": i, x: xa, y: ya, width: wa, height: BAR, fill: c }, title),
      svgEl("rect", { class: "iv iv-b", "data-index": i, x: xb, y: yb, width: wb, height: BAR, fill: c }, title)];
    for (const node of shapes) node.addEventListener("click", () => goInterval(i));
    svg.append(...shapes);
  });
  return svg;
}

// Frames where the best-scored intervals start, on both sides (a side only when it is indexed:
// an uploaded query plays from the browser and has no server thumbnail).
function momentFigures(m, q) {
  const order = m.segments.map((s, i) => i).sort((i, j) => (m.segments[j].score - m.segments[i].score)
    || (m.segments[i].q_start - m.segments[j].q_start)).slice(0, MOMENTS).sort((i, j) => i - j);
  const queryIndexed = q.kind === "video" && q.video_id;
  return order.map((i) => {
    const s = m.segments[i];
    const imgs = [];
    if (queryIndexed) imgs.push(el("img", { src: `/thumbs/${q.video_id}?t=${secs(s.q_start)}`, loading: "lazy",
                                            alt: `${state.queryName} at ${secs(s.q_start)} s` }));
    imgs.push(el("img", { src: `/thumbs/${m.source_id}?t=${secs(s.s_start)}`, loading: "lazy",
                          alt: `${m.name} at ${secs(s.s_start)} s` }));
    const fig = el("figure", { class: "moment", dataset: { index: String(i) }, onclick: () => goInterval(i),
                               title: spanTitle(i, s, "A", "B") },
      el("div", { class: "sides" }, ...imgs),
      el("figcaption", {}, `${i + 1}: A ${secs(s.q_start)} s ↔ B ${secs(s.s_start)} s`));
    fig.style.borderColor = PALETTE[i % PALETTE.length];
    return fig;
  });
}

function setSrc(video, url) {
  if (video.dataset.src !== url) {
    video.dataset.src = url;
    video.src = url;
  }
}

function seek(video, t) {
  // Before its metadata is in, a video cannot seek: do it as soon as it can.
  if (video.readyState >= 1) video.currentTime = t;
  else video.addEventListener("loadedmetadata", () => { video.currentTime = t; }, { once: true });
}

function goInterval(j) {
  const m = state.result.matches[state.selected];
  if (!m || j < 0 || j >= m.segments.length) return;
  state.interval = j;
  const s = m.segments[j];
  seek($("query-player"), s.q_start);
  seek($("source-player"), s.s_start);
  document.querySelectorAll("#intervals li").forEach(
    (li) => li.classList.toggle("active", li.dataset.index === String(j)));
  document.querySelectorAll("#timeline .iv, #timeline .band").forEach(
    (node) => node.classList.toggle("active", node.getAttribute("data-index") === String(j)));
  updateNav();
}

function updateNav() {
  const m = state.result && state.result.matches[state.selected];
  const n = m ? m.segments.length : 0;
  $("interval-pos").textContent = n ? `interval ${state.interval + 1} / ${n}` : "no interval";
  $("prev-interval").disabled = state.interval <= 0;
  $("next-interval").disabled = state.interval < 0 || state.interval >= n - 1;
}

async function verdict(queryId, sourceId, decision, msgEl) {
  await api("/reviews", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query_id: queryId, source_id: sourceId, decision }) });
  say(`Marked ${decision}.`, false, msgEl);
}

async function verdictOnSelected(decision) {
  const m = state.result && state.result.matches[state.selected];
  if (!m) return;
  try {
    await verdict(state.result.query.video_id, m.source_id, decision, $("message"));
    m.decision = decision;
    if (decision === "rejected") {
      state.result.matches.splice(state.selected, 1);
      showResult(state.result, state.queryUrl, state.queryName);
      say("Rejected: this pair will not be reported again.");
    } else {
      $("results").children[state.selected].replaceWith(resultCard(m, state.selected));
      $("results").children[state.selected].classList.add("selected");
    }
  } catch (e) { say("Could not save the verdict: " + e.message, true); }
}

// ---------------------------------------------------------------- review queue

async function loadQueue() {
  const msg = $("review-message");
  say("Scanning the index for low-confidence matches…", false, msg);
  try {
    const res = await api("/reviews/queue?limit=100");
    say(res.total ? `${res.total} match(es) waiting for a verdict.` : "Nothing to review.", false, msg);
    $("review-list").replaceChildren(...res.items.map(reviewItem));
  } catch (e) { say("Could not load the queue: " + e.message, true, msg); }
}

function reviewItem(it) {
  const s = it.segments[0];
  const qt = s ? s.q_start : (it.query_duration || 0) / 2;
  const st = s ? s.s_start : (it.duration || 0) / 2;
  const li = el("li", { class: "review-item", dataset: { queryId: it.query_id, sourceId: it.source_id } });
  const decide = async (decision) => {
    try { await verdict(it.query_id, it.source_id, decision, $("review-message")); li.remove(); }
    catch (e) { say("Could not save the verdict: " + e.message, true, $("review-message")); }
  };
  li.append(
    el("img", { src: `/thumbs/${it.query_id}?t=${secs(qt)}`, alt: it.query_name }),
    el("img", { src: `/thumbs/${it.source_id}?t=${secs(st)}`, alt: it.name }),
    el("div", {},
      el("div", { class: "name" }, `${it.query_name} ↔ ${it.name}`),
      el("div", {}, el("span", { class: "badge " + it.label }, it.label),
        ` score ${fmt(it.fused)} · confidence ${fmt(it.confidence, 2)}`),
      el("div", { class: "muted" }, Object.entries(it.scores).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(" · ")
        + (it.notes.length ? " · " + it.notes.join("; ") : ""))),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "open", onclick: () => {
        location.hash = "#/search";
        searchIndexed(it.query_id, it.query_name, it.source_id);
      } }, "Open"),
      el("button", { type: "button", class: "confirm", onclick: () => decide("confirmed") }, "Confirm"),
      el("button", { type: "button", class: "reject", onclick: () => decide("rejected") }, "Reject")));
  return li;
}

// ---------------------------------------------------------------- wiring

function route() {
  const review = location.hash === "#/review";
  $("view-search").hidden = review;
  $("view-review").hidden = !review;
  $("nav-search").classList.toggle("active", !review);
  $("nav-review").classList.toggle("active", review);
  if (review) loadQueue();
}

$("pick-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const sel = $("pick-video");
  if (sel.value) searchIndexed(sel.value, sel.options[sel.selectedIndex].textContent.replace(/ \(.*\)$/, ""));
});
$("upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = $("upload-file").files[0];
  if (f) searchUpload(f); else say("Choose a video file first.", true);
});
$("pick-prev").addEventListener("click", () => pickPage(-1));
$("pick-next").addEventListener("click", () => pickPage(1));
$("pick-filter").addEventListener("input", pickFilter);
$("prev-interval").addEventListener("click", () => goInterval(state.interval - 1));
$("next-interval").addEventListener("click", () => goInterval(state.interval + 1));
$("play-both").addEventListener("click", () => { $("query-player").play(); $("source-player").play(); });
$("confirm-match").addEventListener("click", () => verdictOnSelected("confirmed"));
$("reject-match").addEventListener("click", () => verdictOnSelected("rejected"));
window.addEventListener("hashchange", route);
loadVideos();
route();
