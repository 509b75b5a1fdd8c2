// The psr-reward playground: scores one generated image through the public API
// (POST /v1/reward with explain and judge_answer) and shows why it got its reward; a
// second tab shows the service's state from GET /info and GET /metrics. Plain browser
// JavaScript, no build step, no network beyond this server.
"use strict";

const COMPONENTS = ["subject_consistency", "semantic_alignment", "aesthetic", "position"];
const MAX_SUBJECTS = 4;
const KEY_STORAGE = "psr-reward-api-key";

const $ = (id) => document.getElementById(id);
let info = null;

// ---- API access ------------------------------------------------------------------------

/** Request headers with the API key, when one is set. */
function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

/** Calls the API; a non-2xx answer throws with the server's `error_type` and message. */
async function call(path, init) {
  const resp = await fetch(path, Object.assign({}, init, { headers: headers(init && init.headers) }));
  if (!resp.ok) {
    let detail = resp.statusText;
    try {
      const body = await resp.json();
      detail = body.error_type + ": " + body.error;
    } catch (_) { /* not JSON */ }
    const e = new Error(resp.status + " " + detail);
    e.status = resp.status;
    throw e;
  }
  return resp;
}

/** A file's content as base64 (no data: prefix). */
function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// ---- The form --------------------------------------------------------------------------

function addSubject(name) {
  const rows = $("subjects");
  if (rows.children.length >= MAX_SUBJECTS) return;
  const row = $("subject-row").content.firstElementChild.cloneNode(true);
  row.querySelector(".subject-name").value = name || "";
  row.querySelector(".remove").addEventListener("click", () => {
    if (rows.children.length > 1) row.remove();
    updateSubjectButtons();
  });
  rows.appendChild(row);
  updateSubjectButtons();
}

function updateSubjectButtons() {
  $("add-subject").disabled = $("subjects").children.length >= MAX_SUBJECTS;
}

/** One weight input per component; the ones this deployment serves start at its defaults. */
function renderComponents() {
  const served = (info && info.rewards && info.rewards.weights) || {};
  const box = $("components");
  box.replaceChildren();
  for (const name of COMPONENTS) {
    const label = document.createElement("label");
    label.className = "component";
    const input = document.createElement("input");
    input.type = "number";
    input.min = "0";
    input.step = "0.05";
    input.id = "weight-" + name;
    input.value = name in served ? String(served[name]) : "0";
    label.append(name.replace("_", " ") + " ", input);
    if (!(name in served)) label.title = "not served with the default weights";
    box.appendChild(label);
  }
}

function showImagePreview(file) {
  const img = $("image-preview");
  img.src = URL.createObjectURL(file);
  img.hidden = false;
}

/** The reward request of the form's inputs. */
async function buildRequest() {
  const imageFile = $("image-file").files[0];
  if (!imageFile) throw new Error("pick a generated image");
  const subjects = [];
  for (const row of $("subjects").children) {
    const name = row.querySelector(".subject-name").value.trim();
    const file = row.querySelector(".subject-file").files[0];
    if (!name || !file) throw new Error("every subject needs a name and a reference image");
    subjects.push({ name, reference: await base64Of(file) });
  }
  const rewards = {};
  for (const name of COMPONENTS) {
    const w = parseFloat($("weight-" + name).value);
    if (w > 0) rewards[name] = w;
  }
  const item = { image: await base64Of(imageFile), prompt: $("prompt").value, subjects };
  if ($("task").value) item.task = $("task").value;
  const request = { items: [item], rewards, mode: $("mode").value, explain: true, judge_answer: true };
  const penalty = $("copy-paste-penalty").value;
  if (penalty !== "") request.copy_paste = { penalty: parseFloat(penalty) };
  return request;
}

async function score(event) {
  event.preventDefault();
  const status = $("status");
  status.textContent = "scoring…";
  $("score-button").disabled = true;
  try {
    const request = await buildRequest();
    const resp = await call("/v1/reward", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
    const body = await resp.json();
    showResult(body.results[0], request.rewards);
    status.textContent = "scored in " + body.timing.total_ms.toFixed(0) + " ms";
  } catch (e) {
    status.textContent = e.message;
    if (e.status === 401) $("api-key").focus();
  } finally {
    $("score-button").disabled = false;
  }
}

// ---- The result ------------------------------------------------------------------------

const fmt = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(4));

function showResult(result, weights) {
  $("result").hidden = false;
  $("reward-value").textContent = fmt(result.reward);
  const rows = $("component-table").querySelector("tbody");
  rows.replaceChildren();
  for (const [name, c] of Object.entries(result.components)) {
    const tr = document.createElement("tr");
    tr.dataset.component = name;
    for (const v of [name, fmt(c.score), fmt(c.raw), String(weights[name] ?? "")]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    rows.appendChild(tr);
  }
  if (result.copy_paste_penalty !== undefined) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td>copy-paste penalty</td><td></td><td></td><td></td>";
    tr.children[1].textContent = "−" + fmt(result.copy_paste_penalty);
    rows.appendChild(tr);
  }
  showExplanation(result);
  showJudge(result.components.semantic_alignment);
  showErrors(result.errors || {});
}

function png(b64) {
  return "data:image/png;base64," + b64;
}

function showExplanation(result) {
  const ex = result.explanation;
  $("annotated").src = ex ? png(ex.image) : "";
  const box = $("subject-results");
  box.replaceChildren();
  const sc = result.components.subject_consistency;
  if (!ex || !sc) return;
  ex.subjects.forEach((crops, s) => {
    const subject = sc.subjects[s];
    const card = document.createElement("div");
    card.className = "subject-card";
    card.style.borderColor = crops.color;
    const title = document.createElement("h4");
    title.textContent = crops.name + (subject.fallback ? " (" + subject.fallback.replace("_", " ") + ")" : "");
    title.style.color = crops.color;
    const pair = document.createElement("div");
    pair.className = "crops";
    pair.append(figure(png(crops.generated_crop), "generated crop"),
      crops.reference_crop ? figure(png(crops.reference_crop), "reference crop") : note("reference sent by hash"));
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = Math.max(0, Math.min(1, subject.similarity)) * 100 + "%";
    fill.style.background = crops.color;
    bar.appendChild(fill);
    const value = document.createElement("p");
    value.className = "similarity";
    value.textContent = "similarity " + fmt(subject.similarity);
    card.append(title, pair, bar, value);
    if (subject.copy_paste && subject.copy_paste.score !== null) {
      const cp = note("copy-paste score " + fmt(subject.copy_paste.score) +
        (subject.copy_paste.suspected ? ": suspected paste" : ""));
      if (subject.copy_paste.suspected) cp.className = "warning";
      card.appendChild(cp);
    }
    box.appendChild(card);
  });
}

function figure(src, caption) {
  const f = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  const c = document.createElement("figcaption");
  c.textContent = caption;
  f.append(img, c);
  return f;
}

function note(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function showJudge(sa) {
  $("judge").hidden = !sa;
  if (!sa) return;
  $("judge-score").textContent = sa.raw === null ? "no score" : sa.raw + " / 10";
  $("judge-answer").textContent = sa.answer || "";
}

function showErrors(errors) {
  const entries = Object.entries(errors);
  $("errors").hidden = entries.length === 0;
  const list = $("errors").querySelector("ul");
  list.replaceChildren(...entries.map(([k, v]) => note(k + ": " + v)));
}

// ---- The service tab -------------------------------------------------------------------

/** Prometheus text: {name: [{labels, value}]} for the samples this page shows. */
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (out[m[1]] = out[m[1]] || []).push({ labels, value: parseFloat(m[4]) });
  }
  return out;
}

function sample(metrics, name, model) {
  const s = (metrics[name] || []).find((x) => !model || x.labels.model === model);
  return s ? s.value : null;
}

/** An instance's provider: the one it runs on, and the one asked for when it differs. */
function provider(instance) {
  const asked = instance.requested === instance.actual ? "" : " (asked: " + instance.requested + ")";
  return instance.actual + (instance.device_id === null ? "" : ":" + instance.device_id) + asked;
}

async function refreshService() {
  try {
    info = await (await call("/info")).json();
    const metrics = parseMetrics(await (await call("/metrics")).text());
    const rows = $("models").querySelector("tbody");
    rows.replaceChildren();
    for (const m of info.models) {
      const items = sample(metrics, "psr_reward_inference_items_total", m.name);
      const batches = sample(metrics, "psr_reward_batch_executions_total", m.name);
      const cells = [m.role, m.name, m.instances.map(provider).join(", "),
        String(m.batching.max_batch_size), String(sample(metrics, "psr_reward_queue_depth", m.name) ?? "–"),
        batches ? (items / batches).toFixed(2) : "–"];
      const tr = document.createElement("tr");
      tr.dataset.model = m.name;
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      rows.appendChild(tr);
    }
    const hits = sample(metrics, "psr_reward_reference_cache_hits_total") || 0;
    const misses = sample(metrics, "psr_reward_reference_cache_misses_total") || 0;
    $("cache").textContent = hits + misses === 0 ? "no lookups yet"
      : "hit rate " + (100 * hits / (hits + misses)).toFixed(1) + " % (" + hits + " hits, " + misses + " misses), " +
        (sample(metrics, "psr_reward_reference_cache_bytes") || 0) + " bytes";
    $("in-flight").textContent = info.in_flight.requests + " requests, " + info.in_flight.bytes + " bytes";
    $("service-status").textContent = (info.ready ? "ready" : "loading") + " · " + info.name + " " + info.version;
  } catch (e) {
    $("service-status").textContent = e.message;
  }
}

// ---- Wiring ----------------------------------------------------------------------------

function showTab(name) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  $("panel-score").hidden = name !== "score";
  $("panel-service").hidden = name !== "service";
  if (name === "service") refreshService();
}

function wire() {
  const key = $("api-key");
  key.value = localStorage.getItem(KEY_STORAGE) || "";
  key.addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, key.value.trim());
    refreshService().then(renderComponents);
  });
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => showTab(t.dataset.tab));
  $("add-subject").addEventListener("click", () => addSubject());
  $("image-file").addEventListener("change", (e) => e.target.files[0] && showImagePreview(e.target.files[0]));
  const drop = $("image-drop");
  drop.addEventListener("dragover", (e) => e.preventDefault());
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) {
      $("image-file").files = e.dataTransfer.files;
      showImagePreview(e.dataTransfer.files[0]);
    }
  });
  $("score-form").addEventListener("submit", score);
  $("refresh").addEventListener("click", refreshService);
  setInterval(() => { if (!$("panel-service").hidden) refreshService(); }, 2000);
  addSubject();
  refreshService().then(renderComponents);
}

wire();
