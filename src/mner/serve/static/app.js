// The mner web page: no framework, no network beyond this server.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const COLOURS = ["#ffd166", "#8ecae6", "#b5e48c", "#f4a3a8", "#cdb4db", "#ffb703", "#90dbf4", "#e9c46a"];
  const colourOf = {};
  let imageData = null;      // data: URL of the chosen image
  let lastResult = null;

  function colour(type) {
    if (!(type in colourOf)) colourOf[type] = COLOURS[Object.keys(colourOf).length % COLOURS.length];
    return colourOf[type];
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message || "";
    el.hidden = !message;
  }

  // ------------------------------------------------------------------ model description
  fetch("/model").then((r) => r.json()).then((info) => {
    if (info.error) { $("model-line").textContent = info.message; return; }
    (info.entity_types || []).forEach(colour);
    const enc = Object.entries(info.encoders || {}).map(([k, v]) => k + ": " + v).join(", ");
    $("model-line").textContent = "Model " + info.model_type + " (" + (info.variant || "") + "), types " +
      (info.entity_types || []).join(", ") + "; views " + (info.views.join(", ") || "text only") + "; " + enc +
      "; mner " + info.mner_version;
    $("caption-row").hidden = !(info.views || []).includes("caption");
    $("tabs").hidden = !info.fewshot;
  }).catch(() => { $("model-line").textContent = "the server did not describe its model"; });

  // ------------------------------------------------------------------ image choice
  function useFile(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) { showError(file.name + " is not an image; choose a JPEG or PNG file"); return; }
    const reader = new FileReader();
    reader.onload = () => {
      imageData = reader.result;
      $("preview").src = imageData;
      $("preview").hidden = false;
      $("preview").alt = "chosen image " + file.name;
      $("drop-label").textContent = file.name;
      $("clear-image").hidden = false;
      showError("");
    };
    reader.readAsDataURL(file);
  }
  $("image").addEventListener("change", (e) => useFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); useFile(e.dataTransfer.files[0]); });
  drop.addEventListener("click", () => $("image").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("image").click(); } });
  $("clear-image").addEventListener("click", () => {
    imageData = null; $("image").value = ""; $("preview").hidden = true; $("preview").removeAttribute("src");
    $("drop-label").textContent = "Drop an image here"; $("clear-image").hidden = true;
  });

  // ------------------------------------------------------------------ tagging
  $("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $("form").requestSubmit(); } });
  $("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (!text.trim()) { showError("Type or paste a tweet first."); $("text").focus(); return; }
    const body = { text: text, explain: true };
    if (imageData) body.image = imageData;
    const caption = $("caption").value;
    if (!$("caption-row").hidden && caption.trim()) body.caption = caption;
    $("tag").disabled = true; $("tag").textContent = "Tagging…";
    try {
      const r = await fetch("/predict", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const data = await r.json();
      if (!r.ok) { showError(data.message || ("the server answered " + r.status)); return; }
      showError("");
      lastResult = { text: text, image: imageData, data: data };
      render(lastResult);
    } catch (err) {
      showError("The server could not be reached (" + err + "); is mner serve still running?");
    } finally {
      $("tag").disabled = false; $("tag").textContent = "Tag";
    }
  });

  function render(res) {
    drawEntities($("tweet"), res.text, res.data.entities, explain);
    renderRest(res);
  }

  function drawEntities(tweet, text, entities, onChoose) {
    const res = { text: text, data: { entities: entities } };
    tweet.textContent = "";
    let at = 0;
    res.data.entities.forEach((ent, i) => {
      tweet.appendChild(document.createTextNode(res.text.slice(at, ent.start)));
      const b = document.createElement("button");
      b.type = "button";
      b.className = "entity";
      b.dataset.type = ent.type;
      b.dataset.index = String(i);
      b.style.background = colour(ent.type);
      b.title = ent.type + ", confidence " + ent.confidence.toFixed(2);
      b.setAttribute("aria-pressed", "false");
      b.setAttribute("aria-label", ent.text + ": " + ent.type + ", confidence " + ent.confidence.toFixed(2) + ". Press to see what it looked at");
      b.appendChild(document.createTextNode(res.text.slice(ent.start, ent.end)));
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = ent.type;
      b.appendChild(tag);
      if (onChoose) b.addEventListener("click", () => onChoose(i));
      tweet.appendChild(b);
      at = ent.end;
    });
    tweet.appendChild(document.createTextNode(res.text.slice(at)));
    if (!entities.length) tweet.appendChild(document.createTextNode("  (no entity found)"));
  }

  function renderRest(res) {
    const legend = $("legend");
    legend.textContent = "";
    if (!res.data.entities.length) legend.textContent = "No entity found.";
    [...new Set(res.data.entities.map((e) => e.type))].forEach((t) => {
      const s = document.createElement("span"); s.style.background = colour(t); s.textContent = t; legend.appendChild(s);
    });
    const p = res.data.match_probability;
    $("match").textContent = p === null || p === undefined
      ? (res.image ? "This model does not say how well the image fits the text." : "No image: the model read the text alone.")
      : "The image fits the text: " + p.toFixed(2);
    $("timing").textContent = "answered in " + Math.round(res.data.time_ms) + " ms";
    $("result").hidden = false;
    $("explanation").hidden = true;
  }

  // ------------------------------------------------------------------ explanations
  function explain(i) {
    const ent = lastResult.data.entities[i];
    document.querySelectorAll(".entity").forEach((b) => b.setAttribute("aria-pressed", b.dataset.index === String(i) ? "true" : "false"));
    $("explanation-title").textContent = "What \u201c" + ent.text + "\u201d (" + ent.type + ") looked at";
    const ex = ent.explanation || {};
    $("no-explanation").hidden = !!(ex.pixels || ex.caption);
    $("heat-wrap").hidden = !ex.pixels;
    $("caption-heat").hidden = !ex.caption;
    if (ex.pixels && lastResult.image) drawHeat(ex.pixels);
    if (ex.caption) drawCaption(ex.caption);
    $("explanation").hidden = false;
  }

  function drawHeat(px) {
    const img = $("heat-image");
    const paint = () => {
      const canvas = $("heatmap");
      const [h, w] = px.grid;
      canvas.width = w; canvas.height = h;     // one canvas pixel per region, stretched by CSS
      canvas.style.imageRendering = "auto";
      const ctx = canvas.getContext("2d");
      const max = Math.max(...px.weights) || 1;
      const min = Math.min(...px.weights);
      const cells = ctx.createImageData(w, h);
      px.weights.forEach((v, k) => {
        const a = max > min ? (v - min) / (max - min) : 0;   // the weights' own range: the lowest clear
        cells.data[4 * k] = 255; cells.data[4 * k + 1] = Math.round(200 * (1 - a)); cells.data[4 * k + 2] = 0;
        cells.data[4 * k + 3] = Math.round(170 * a);
      });
      ctx.putImageData(cells, 0, 0);
      canvas.dataset.max = String(max);
    };
    if (img.getAttribute("src") !== lastResult.image) { img.onload = paint; img.src = lastResult.image; } else paint();
  }

  // ------------------------------------------------------------------ few-shot tab
  const tabs = [["tab-tag", "panel-tag"], ["tab-fewshot", "panel-fewshot"]];
  function choose(k) {
    tabs.forEach(([t, p], j) => {
      $(t).setAttribute("aria-selected", j === k ? "true" : "false");
      $(t).tabIndex = j === k ? 0 : -1;
      $(p).hidden = j !== k;
    });
    $(tabs[k][0]).focus();
  }
  tabs.forEach(([t], k) => {
    $(t).addEventListener("click", () => choose(k));
    $(t).addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") { e.preventDefault(); choose((k + 1) % 2); }
    });
  });

  const support = [];           // [{text, entities: [{start, end, type}]}]
  let current = [];             // entities of the example being annotated
  function showCurrent() {
    const text = $("fs-example").value;
    const ents = current.slice().sort((a, b) => a.start - b.start)
      .map((e) => ({ text: text.slice(e.start, e.end), type: e.type, start: e.start, end: e.end, confidence: 1 }));
    if (!ents.length) { $("fs-current").textContent = text ? "(no span marked yet)" : ""; return; }
    drawEntities($("fs-current"), text, ents, null);
  }
  $("fs-example").addEventListener("input", () => { current = []; showCurrent(); });
  $("fs-mark").addEventListener("click", () => {
    const box = $("fs-example");
    let s = box.selectionStart, e = box.selectionEnd;
    const text = box.value;
    while (s < e && /\s/.test(text[s])) s++;
    while (e > s && /\s/.test(text[e - 1])) e--;
    const type = $("fs-type").value.trim();
    if (s >= e) { showError("Select the words of a mention in the example tweet first."); box.focus(); return; }
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,29}$/.test(type)) { showError("Give the type a name (letters and digits, e.g. DISH)."); $("fs-type").focus(); return; }
    if (current.some((c) => c.start < e && c.end > s)) { showError("That selection overlaps a marked span."); return; }
    showError("");
    current.push({ start: s, end: e, type: type });
    if (![...$("fs-types").options].some((o) => o.value === type)) {
      const o = document.createElement("option"); o.value = type; $("fs-types").appendChild(o);
    }
    showCurrent();
  });
  $("fs-add").addEventListener("click", () => {
    const text = $("fs-example").value;
    if (!text.trim() || !current.length) { showError("Type an example tweet and mark at least one span in it."); return; }
    showError("");
    support.push({ text: text, entities: current.slice() });
    const li = document.createElement("li");
    drawEntities(li, text, current.slice().sort((a, b) => a.start - b.start)
      .map((e) => ({ text: text.slice(e.start, e.end), type: e.type, start: e.start, end: e.end, confidence: 1 })), null);
    li.className = "tweet";
    $("fs-support").appendChild(li);
    $("fs-example").value = ""; current = []; showCurrent(); $("fs-example").focus();
  });
  $("fs-tag").addEventListener("click", async () => {
    const text = $("fs-text").value;
    if (!support.length) { showError("Add at least one annotated example first."); return; }
    if (!text.trim()) { showError("Type a tweet to tag."); $("fs-text").focus(); return; }
    $("fs-tag").disabled = true;
    try {
      const r = await fetch("/fewshot/predict", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ support: support, text: text }) });
      const data = await r.json();
      if (!r.ok) { showError(data.message || ("the server answered " + r.status)); return; }
      showError("");
      drawEntities($("fs-tweet"), text, data.entities, null);
      $("fs-result").hidden = false;
    } catch (err) {
      showError("The server could not be reached (" + err + ").");
    } finally { $("fs-tag").disabled = false; }
  });

  function drawCaption(cap) {
    const el = $("caption-heat");
    el.textContent = "";
    const max = Math.max(...cap.weights) || 1;
    (cap.tokens || cap.weights.map((_, k) => "#" + k)).forEach((tok, k) => {
      const s = document.createElement("span");
      s.textContent = tok;
      s.title = "attention " + cap.weights[k].toFixed(3);
      s.style.background = "rgba(255, 120, 0, " + (0.1 + 0.8 * cap.weights[k] / max).toFixed(2) + ")";
      el.appendChild(s);
    });
  }
})();
