// AstraDup web page: plain browser JavaScript, no build step.
// Data is only ever put into the page with textContent / attributes, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { result: null, queryUrl: "", queryName: "", selected: -1, interval: -1, objectUrl: "" };

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

async function loadVideos() {
  try {
    const res = await api("/videos?status=ok&limit=1000");
    const sel = $("pick-video");
    sel.replaceChildren(...res.videos.map((v) =>
      el("option", { value: v.video_id }, `${v.name} (${v.duration ? secs(v.duration) + " s" : "?"})`)));
    $("index-info").textContent = `${res.total} indexed video(s)`;
  } catch (e) { say("Could not list videos: " + e.message, true); }
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
      onclick: () => goInterval(j) },
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
  state.interval = -1;
  if (m.segments.length) goInterval(0); else updateNav();
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
$("prev-interval").addEventListener("click", () => goInterval(state.interval - 1));
$("next-interval").addEventListener("click", () => goInterval(state.interval + 1));
$("play-both").addEventListener("click", () => { $("query-player").play(); $("source-player").play(); });
$("confirm-match").addEventListener("click", () => verdictOnSelected("confirmed"));
$("reject-match").addEventListener("click", () => verdictOnSelected("rejected"));
window.addEventListener("hashchange", route);
loadVideos();
route();
