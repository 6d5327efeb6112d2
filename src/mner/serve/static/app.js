// The mner web page: no framework, no network beyond this server.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let imageData = null;      // data: URL of the chosen image
  let lastResult = null;

  // ------------------------------------------------------------------ colours: one palette
  // static/palette.json is the one palette of the page and of mner explain / mner report:
  // the usual types have their own colour, other types take the "more" colours in turn.
  let palette = { types: {}, more: ["#dddddd"], attention: "#ff7800" };
  const extraColour = {};
  fetch("/static/palette.json").then((r) => r.json()).then((p) => { palette = p; }).catch(() => {});
  function colour(type) {
    if (type in palette.types) return palette.types[type];
    if (!(type in extraColour)) extraColour[type] = palette.more[Object.keys(extraColour).length % palette.more.length];
    return extraColour[type];
  }

  // ------------------------------------------------------------------ offsets
  // The service counts offsets in Unicode code points (Python's str); JavaScript strings count
  // UTF-16 units, and an emoji outside the Basic Multilingual Plane is two of them. Convert at
  // every boundary: code points -> units to draw an answer, units -> code points to send a selection.
  function unitsOfCodePoints(text) {     // at[k] = the UTF-16 index of code point k (k = 0..n)
    const at = [0];
    let u = 0;
    for (const ch of text) { u += ch.length; at.push(u); }
    return at;
  }
  function codePointsOfUnits(text, u) {  // the code point index of UTF-16 index u
    const c = text.charCodeAt(u);
    if (u > 0 && c >= 0xDC00 && c <= 0xDFFF && text.charCodeAt(u - 1) >= 0xD800 && text.charCodeAt(u - 1) <= 0xDBFF) u -= 1;
    return Array.from(text.slice(0, u)).length;
  }

  // ------------------------------------------------------------------ errors and announcements
  function activePanel() { return $("panel-fewshot").hidden ? "tag" : "fewshot"; }
  function reveal(el) { el.scrollIntoView({ block: "nearest" }); }
  function showError(message) {
    const el = activePanel() === "fewshot" ? $("fs-error") : $("error");
    $("error").textContent = ""; $("fs-error").textContent = "";
    el.textContent = message || "";
    if (message) reveal(el);
  }
  function announce(message) { $("status").textContent = message; }

  // ------------------------------------------------------------------ model description
  function describe() {
    fetch("/model").then(async (r) => {
      const info = await r.json();
      if (r.status === 503 && info.error === "not_ready") {   // the server listens while the model loads
        $("model-line").textContent = "The model is still loading…";
        setTimeout(describe, 1000 * (parseInt(r.headers.get("Retry-After"), 10) || 1));
        return;
      }
      if (info.error) { $("model-line").textContent = info.message; return; }
      const enc = Object.entries(info.encoders || {}).map(([k, v]) => k + ": " + v).join(", ");
      $("model-line").textContent = "Model " + info.model_type + " (" + (info.variant || "") + "), types " +
        (info.entity_types || []).join(", ") + "; views " + (info.views.join(", ") || "text only") + "; " + enc +
        "; mner " + info.mner_version;
      $("caption-row").hidden = !(info.views || []).includes("caption");
      $("tabs").hidden = !info.fewshot;
    }).catch(() => { $("model-line").textContent = "the server did not describe its model"; });
  }
  describe();

  // ------------------------------------------------------------------ image choice
  // The file input, the drop zone and the preview always name the same file (or none).
  function clearImage() {
    imageData = null; $("image").value = "";
    $("preview").hidden = true; $("preview").removeAttribute("src"); $("preview").alt = "";
    $("drop-label").textContent = "Drop an image here"; $("clear-image").hidden = true;
  }
  function useFile(file, dropped) {
    if (!file) return;
    if (!file.type.startsWith("image/")) {
      clearImage();
      showError(file.name + " is not an image; choose a JPEG or PNG file");
      return;
    }
    if (dropped) {            // the file input names the dropped file too
      try { const dt = new DataTransfer(); dt.items.add(file); $("image").files = dt.files; } catch (err) { $("image").value = ""; }
    }
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
  $("image").addEventListener("change", (e) => { if (e.target.files[0]) useFile(e.target.files[0], false); else clearImage(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); useFile(e.dataTransfer.files[0], true); });
  drop.addEventListener("click", () => $("image").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("image").click(); } });
  $("clear-image").addEventListener("click", () => { clearImage(); showError(""); $("drop").focus(); });

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
      if (!r.ok) { clearResult(); showError(data.message || ("the server answered " + r.status)); return; }
      showError("");
      lastResult = { text: text, image: imageData, data: data };
      render(lastResult);
    } catch (err) {
      clearResult();
      showError("The server could not be reached (" + err + "); is mner serve still running?");
    } finally {
      $("tag").disabled = false; $("tag").textContent = "Tag";
    }
  });

  function clearResult() {   // an answer that failed leaves no earlier answer on the page
    lastResult = null;
    $("result").hidden = true; $("explanation").hidden = true;
    $("tweet").textContent = ""; $("legend").textContent = ""; $("match").textContent = ""; $("timing").textContent = "";
  }

  function render(res) {
    drawEntities($("tweet"), res.text, res.data.entities, explain);
    renderRest(res);
    reveal($("result"));
    const ents = res.data.entities;
    announce(ents.length ? ents.length + (ents.length === 1 ? " entity: " : " entities: ") +
      ents.map((e) => e.text + " (" + e.type + ")").join(", ") + ". " + $("match").textContent : "No entity found.");
  }

  // entities: offsets in code points (as the service sends them)
  function drawEntities(tweet, text, entities, onChoose) {
    const units = unitsOfCodePoints(text);
    const u = (k) => units[Math.min(k, units.length - 1)];
    tweet.textContent = "";
    let at = 0;
    entities.forEach((ent, i) => {
      tweet.appendChild(document.createTextNode(text.slice(at, u(ent.start))));
      const b = document.createElement("button");
      b.type = "button";
      b.className = "entity";
      b.dataset.type = ent.type;
      b.dataset.index = String(i);
      b.style.background = colour(ent.type);
      b.title = ent.type + ", confidence " + ent.confidence.toFixed(2);
      b.setAttribute("aria-pressed", "false");
      b.setAttribute("aria-label", ent.text + ": " + ent.type + ", confidence " + ent.confidence.toFixed(2) + ". Press to see what it looked at");
      b.appendChild(document.createTextNode(text.slice(u(ent.start), u(ent.end))));
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = ent.type;
      b.appendChild(tag);
      if (onChoose) b.addEventListener("click", () => onChoose(i));
      tweet.appendChild(b);
      at = u(ent.end);
    });
    tweet.appendChild(document.createTextNode(text.slice(at)));
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
    reveal($("explanation"));
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

  const support = [];           // [{text, entities: [{start, end, type}]}], offsets in code points
  let current = [];             // entities of the example being annotated (code points)
  function marked(text, spans) {
    const cps = Array.from(text);
    return spans.slice().sort((a, b) => a.start - b.start)
      .map((e) => ({ text: cps.slice(e.start, e.end).join(""), type: e.type, start: e.start, end: e.end, confidence: 1 }));
  }
  function showCurrent() {
    const text = $("fs-example").value;
    const ents = marked(text, current);
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
    const start = codePointsOfUnits(text, s), end = codePointsOfUnits(text, e);   // what the service counts
    if (current.some((c) => c.start < end && c.end > start)) { showError("That selection overlaps a marked span."); return; }
    showError("");
    current.push({ start: start, end: end, type: type });
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
    drawEntities(li, text, marked(text, current), null);
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
      if (!r.ok) { $("fs-result").hidden = true; showError(data.message || ("the server answered " + r.status)); return; }
      showError("");
      drawEntities($("fs-tweet"), text, data.entities, null);
      $("fs-result").hidden = false;
      reveal($("fs-result"));
      announce(data.entities.length ? data.entities.length + " entities: " +
        data.entities.map((e) => e.text + " (" + e.type + ")").join(", ") : "No entity of these types found.");
    } catch (err) {
      $("fs-result").hidden = true;
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
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(palette.attention.slice(i, i + 2), 16));
      s.style.background = "rgba(" + r + ", " + g + ", " + b + ", " + (0.1 + 0.8 * cap.weights[k] / max).toFixed(2) + ")";
      el.appendChild(s);
    });
  }
})();
