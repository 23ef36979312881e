// rnnkit's page: a view per task over the JSON API, and "look inside" over /trace.
// Plain JavaScript, no build step; every request goes to this server's /v1/.

const $ = (id) => document.getElementById(id);
let models = [];
let current = null;
let trace = null;

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  const key = $("key").value;
  if (key) headers.Authorization = `Bearer ${key}`;
  const r = await fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
  if (r.status === 401) $("key-label").hidden = false;
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { const e = (await r.json()).error; msg = e.message + (e.field ? ` (${e.field})` : ""); } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function status(msg, error = false) { $("status").textContent = msg; $("status").className = error ? "error" : "muted"; }

// A tooltip that follows the focused or hovered token.
const tip = el("div", { id: "tip", hidden: "" });
document.body.append(tip);
function showTip(target, html) {
  tip.innerHTML = html; tip.hidden = false;
  const r = target.getBoundingClientRect();
  tip.style.left = `${Math.min(r.left, innerWidth - 260)}px`; tip.style.top = `${r.bottom + 6}px`;
}
function hideTip() { tip.hidden = true; }
const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const shown = (t) => (t === "\n" ? "⏎\n" : t);
/** A token as written between its neighbours: word tokens get a space after them. */
const spaced = (t, tokens) => shown(t) + (tokens.some((x) => /\s/.test(x)) ? "" : " ");

function probTable(pairs) {
  return `<table class="probs">${pairs.map(([k, p]) => `<tr><td>${esc(String(k))}</td><td><div class="bar"><span class="fill" style="width:${Math.round(p * 120)}px"></span>${p.toFixed(3)}</div></td></tr>`).join("")}</table>`;
}

// ---- views ----

const views = {
  lm: {
    label: "Prompt", text: "ROMEO:",
    controls: [["max_tokens", 100], ["temperature", 0.8], ["top_k", 0], ["seed", 1]],
    async run(name, text, opts) {
      const out = el("div", { class: "tokens", id: "generated" });
      $("output").replaceChildren(el("h2", {}, "Generated"), out);
      out.append(el("b", {}, text));
      const r = await api(`/v1/models/${name}/generate`, { inputs: [text], stream: true, ...opts });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "", event = "", generated = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 1);
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ") && event === "token") {
            const piece = JSON.parse(line.slice(6)).text;
            generated += piece; out.append(piece);
          } else if (line.startsWith("data: ") && event === "error") throw new Error(JSON.parse(line.slice(6)).message);
        }
      }
      await inside(name, text + generated, (t, i) => {
        const next = t.task.next[i].map(([tok, p]) => [shown(tok), p]);
        return `after <b>${esc(shown(t.tokens[i]))}</b>, the next token:${probTable(next)}`;
      });
      out.replaceChildren(...tokenSpans(trace));
      status(`${generated.length} characters generated; click a token for its next-token probabilities`);
    },
  },
  tag: {
    label: "Sentence", text: "Angela Merkel met Emmanuel Macron in Paris on Monday .",
    controls: [],
    async run(name, text) {
      const res = (await (await api(`/v1/models/${name}/tag`, { inputs: [text] })).json()).results[0];
      const t = await inside(name, text, (t, i) => {
        const k = t.task.labels.length;
        const row = t.task.labels.map((l, j) => [l, t.task.marginals[i * k + j]]).sort((a, b) => b[1] - a[1]).slice(0, 5);
        return `<b>${esc(t.tokens[i])}</b>: ${esc(t.task.predicted[i])}${probTable(row)}`;
      });
      const out = el("div", { class: "tokens", id: "entities" });
      let at = 0;
      const chars = [...text];
      for (const e of res.entities) {
        out.append(chars.slice(at, e.char_start).join(""));
        out.append(el("span", { class: `ent ${e.type}`, title: `${e.type} ${e.prob === null ? "" : e.prob.toFixed(2)}` }, e.text, el("small", {}, e.type)));
        at = e.char_end;
      }
      out.append(chars.slice(at).join(""));
      const toks = el("div", { class: "tokens", id: "tag-tokens" }, ...tokenSpans(t));
      $("output").replaceChildren(el("h2", {}, "Entities"), out, el("h3", {}, "Tokens (hover or focus for the tag probabilities)"), toks);
      hook(toks, t);
      status(`${res.entities.length} entities`);
    },
  },
  classify: {
    label: "Sentence", text: "a gorgeous , witty , seductive movie .",
    controls: [],
    async run(name, text) {
      const t = await inside(name, text, (t, i) => `<b>${esc(t.tokens[i])}</b>: weight ${t.task.weights[i].toFixed(3)}`);
      const p = t.task.probs;
      const best = p.indexOf(Math.max(...p));
      const max = Math.max(...t.task.weights);
      const shaded = t.tokens.map((tok, i) => {
        const s = el("span", { class: "tok", tabindex: "0", "data-i": i }, tok + " ");
        s.style.background = `rgba(74, 111, 165, ${(t.task.weights[i] / (max || 1)).toFixed(3)})`;
        return s;
      });
      const bars = el("div", { id: "probs" });
      bars.innerHTML = probTable(t.task.labels.map((l, j) => [l, p[j]]));
      $("output").replaceChildren(el("h2", { id: "label" }, `Label: ${t.task.labels[best]}`),
        bars, el("div", { class: "tokens", id: "weights" }, ...shaded));
      hook($("weights"), t);
      status(`${t.task.pooling} pooling; each token shaded by its weight`);
    },
  },
  translate: {
    label: "Source sentence", text: "Ein Mann fährt Fahrrad.",
    controls: [["beam", 5], ["n_best", 1]],
    async run(name, text, opts) {
      const res = (await (await api(`/v1/models/${name}/translate`, { inputs: [text], attention: true, ...opts })).json()).results[0];
      const best = res.hypotheses[0];
      const list = el("ol", {}, ...res.hypotheses.map((h) => el("li", {}, `${h.translation}  `, el("span", { class: "muted" }, `(score ${h.score.toFixed(3)})`))));
      const canvas = el("canvas", { id: "attention", width: 720, height: 420 });
      $("output").replaceChildren(el("h2", {}, "Translation"), list, el("h3", {}, "Attention (target rows × source columns)"), canvas);
      drawMatrix(canvas, best.attention, best.tokens, res.source_tokens, 0, 1);
      await inside(name, text, (t, i) => `<b>${esc(t.tokens[i])}</b>`);
      status(`beam ${opts.beam}: ${best.tokens.length} target tokens`);
    },
  },
};

// ---- look inside ----

function tokenSpans(t) {
  return t.tokens.map((tok, i) => el("span", { class: "tok", tabindex: "0", "data-i": i }, spaced(tok, t.tokens)));
}

let tipFor = null;
function hook(container, t) {
  const at = (e) => e.target.closest(".tok");
  const show = (e) => { const s = at(e); if (s && tipFor) showTip(s, tipFor(t, +s.dataset.i)); };
  container.addEventListener("mouseover", show);
  container.addEventListener("focusin", show);
  container.addEventListener("click", (e) => { const s = at(e); if (s) { container.querySelectorAll(".selected").forEach((x) => x.classList.remove("selected")); s.classList.add("selected"); show(e); } });
  container.addEventListener("mouseout", hideTip);
  container.addEventListener("focusout", hideTip);
}

async function inside(name, text, describe) {
  trace = await (await api(`/v1/models/${name}/trace`, { text })).json();
  tipFor = describe;
  const t = trace;
  $("inside").hidden = false;
  $("layer").replaceChildren(...t.stack.dirs.map((d, i) => el("option", { value: i }, `layer ${d.layer}${d.reverse ? " backward" : ""}`)));
  const q = [["h", "hidden state h"]];
  if (t.stack.dirs[0].c.length) q.push(["c", "cell state c"]);
  t.gate_names.forEach((g, j) => q.push([`g${j}`, `${g} gate`]));
  $("quantity").replaceChildren(...q.map(([v, l]) => el("option", { value: v }, l)));
  $("cell").max = t.stack.hidden - 1;
  $("cells").replaceChildren();
  drawInside();
  document.querySelectorAll("#output .tokens").forEach((c) => hook(c, t));
  return t;
}

/** values [T, H] of the chosen layer and quantity. */
function matrix() {
  const t = trace, d = t.stack.dirs[+$("layer").value], H = t.stack.hidden, T = t.stack.t;
  const q = $("quantity").value;
  if (q === "h" || q === "c") return { rows: T, cols: H, at: (i, u) => d[q][i * H + u], signed: true };
  const g = +q.slice(1), G = t.gate_names.length;
  const signed = t.gate_names[g] === "cell" || t.gate_names[g] === "candidate";
  return { rows: T, cols: H, at: (i, u) => d.gates[(i * G + g) * H + u], signed };
}

function colour(v, signed) {
  if (signed) { const a = Math.max(-1, Math.min(1, v)); return a >= 0 ? `rgba(214, 60, 50, ${a.toFixed(3)})` : `rgba(50, 100, 214, ${(-a).toFixed(3)})`; }
  const a = Math.max(0, Math.min(1, v)); return `rgba(40, 150, 90, ${a.toFixed(3)})`;
}

function drawInside() {
  if (!trace) return;
  const m = matrix();
  const u = Math.max(0, Math.min(+$("cell").value || 0, trace.stack.hidden - 1));
  const spans = trace.tokens.map((tok, i) => {
    const s = el("span", { class: "tok", tabindex: "0", "data-i": i, title: `${m.at(i, u).toFixed(3)}` }, spaced(tok, trace.tokens));
    s.style.background = colour(m.at(i, u), m.signed);
    return s;
  });
  $("coloured").replaceChildren(...spans);
  const vals = [];
  for (let x = 0; x < m.cols; x++) { const row = []; for (let i = 0; i < m.rows; i++) row.push(m.at(i, x)); vals.push(row); }
  drawMatrix($("heatmap"), vals, null, trace.tokens.map(shown), m.signed ? -1 : 0, 1);
}

/** Draws `rows` (arrays) as a heatmap with optional row and column labels. */
function drawMatrix(canvas, rows, rowLabels, colLabels, lo, hi) {
  const ctx = canvas.getContext("2d");
  const left = rowLabels ? 90 : 4, top = colLabels ? 60 : 4;
  const nr = rows.length, nc = rows[0] ? rows[0].length : 0;
  const cw = Math.max(2, Math.min(40, (canvas.width - left) / Math.max(nc, 1)));
  const ch = Math.max(1, Math.min(30, (canvas.height - top) / Math.max(nr, 1)));
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = "11px monospace";
  for (let r = 0; r < nr; r++) {
    for (let c = 0; c < nc; c++) {
      ctx.fillStyle = colour(lo < 0 ? rows[r][c] : (rows[r][c] - lo) / (hi - lo), lo < 0);
      ctx.fillRect(left + c * cw, top + r * ch, cw, ch);
    }
    if (rowLabels && ch >= 9) { ctx.fillStyle = "#222"; ctx.fillText(rowLabels[r].slice(0, 12), 2, top + r * ch + ch * 0.75); }
  }
  if (colLabels && cw >= 7) {
    ctx.fillStyle = "#222";
    colLabels.forEach((l, c) => { ctx.save(); ctx.translate(left + c * cw + cw * 0.7, top - 4); ctx.rotate(-Math.PI / 3); ctx.fillText(l.slice(0, 10), 0, 0); ctx.restore(); });
  }
}

/** LSTMVis's idea: the cells whose activation best follows the selected span (Pearson
 * correlation with the span's indicator). */
function findCells() {
  const sel = getSelection();
  const spans = [...$("coloured").querySelectorAll(".tok")].filter((s) => sel.containsNode(s, true));
  if (!spans.length) { status("select a span of the coloured text first", true); return; }
  const T = trace.stack.t, m = matrix();
  const ind = new Array(T).fill(0);
  spans.forEach((s) => { ind[+s.dataset.i] = 1; });
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const mi = mean(ind);
  const scores = [];
  for (let u = 0; u < m.cols; u++) {
    const v = []; for (let i = 0; i < T; i++) v.push(m.at(i, u));
    const mv = mean(v);
    let sxy = 0, sxx = 0, syy = 0;
    for (let i = 0; i < T; i++) { sxy += (v[i] - mv) * (ind[i] - mi); sxx += (v[i] - mv) ** 2; syy += (ind[i] - mi) ** 2; }
    scores.push([u, sxx && syy ? sxy / Math.sqrt(sxx * syy) : 0]);
  }
  scores.sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  $("cells").replaceChildren(el("span", { class: "muted" }, "cells that follow the span: "),
    ...scores.slice(0, 8).map(([u, r]) => el("button", { type: "button", onclick: () => { $("cell").value = u; drawInside(); } }, `${u} (r ${r.toFixed(2)})`)));
  status(`${spans.length} tokens selected`);
}

// ---- setup ----

function setup() {
  current = models.find((m) => m.name === $("model").value);
  if (!current) return;
  const v = views[current.task];
  $("model-info").textContent = `${current.task} · ${current.config.rnn ? current.config.rnn.cell : (current.config.encoder || {}).cell || ""} · ${current.params.toLocaleString()} parameters`;
  $("text-label").textContent = v.label;
  $("text").value = v.text;
  $("controls").replaceChildren(...v.controls.map(([k, d]) => el("label", {}, `${k} `, el("input", { id: `opt-${k}`, type: "number", step: "any", value: d }))));
  $("output").replaceChildren();
  $("inside").hidden = true;
  trace = null;
}

async function run() {
  const v = views[current.task];
  const opts = {};
  for (const [k] of v.controls) { const x = $(`opt-${k}`).value; if (x !== "") opts[k] = Number(x); }
  status("running…");
  $("run").disabled = true;
  try { await v.run(current.name, $("text").value, opts); } catch (e) { status(e.message, true); } finally { $("run").disabled = false; }
}

async function init() {
  try {
    models = (await (await api("/v1/models")).json()).models;
  } catch (e) { status(`${e.message}: enter the API key and reload`, true); return; }
  $("model").replaceChildren(...models.map((m) => el("option", { value: m.name }, `${m.name} (${m.task})`)));
  $("model").addEventListener("change", setup);
  $("run").addEventListener("click", run);
  $("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
  for (const id of ["layer", "quantity", "cell"]) $(id).addEventListener("input", drawInside);
  $("find").addEventListener("click", findCells);
  // A link may name a model, a text, the view's options, whether to run, and what the
  // inside view shows: #model=lm&text=...&temperature=0.5&run&layer=1&quantity=c&cell=42
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("model") && models.some((m) => m.name === h.get("model"))) $("model").value = h.get("model");
  setup();
  if (h.get("text")) $("text").value = h.get("text");
  for (const [k] of views[current.task].controls) if (h.has(k)) $(`opt-${k}`).value = h.get(k);
  status("ready: Run (or Ctrl+Enter)");
  if (h.has("run")) {
    await run();
    for (const id of ["layer", "quantity", "cell"]) if (h.has(id)) $(id).value = h.get(id);
    drawInside();
  }
}

init();
