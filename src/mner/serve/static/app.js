// The mner web page: no framework, no network beyond this server.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let image = null;          // the chosen image: {data (data: URL sent), name, note}
  let lastResult = null;
  let info = null;           // GET /model
  const fmt = (n) => Number(n).toLocaleString("en-US");
  const fix2 = (x) => Number(x).toFixed(2);

  // ------------------------------------------------------------------ colours and the attention scale
  // static/palette.json is the one palette of the page and of mner explain / mner report: the
  // usual types have their own colour, other types take the "more" colours in turn; attention is
  // drawn relative to uniform attention on the scale it sets (see its comment).
  let palette = { types: {}, more: ["#dddddd"], attention: "#ff7800",
    attention_scale: { top: 8, near_uniform: 1.5 }, attention_ramp: { low: "#ffc800", high: "#e00000", max_alpha: 0.75 } };
  const extraColour = {};
  const paletteReady = fetch("/static/palette.json").then((r) => r.json()).then((p) => { palette = p; }).catch(() => {});
  function colour(type) {
    if (type in palette.types) return palette.types[type];
    if (!(type in extraColour)) extraColour[type] = palette.more[Object.keys(extraColour).length % palette.more.length];
    return extraColour[type];
  }
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  // a weight's level: log2(weight / uniform) / log2(top), clipped to [0, 1] (uniform = 1 / count)
  function levels(weights) {
    const n = weights.length, top = Math.log2(palette.attention_scale.top);
    return weights.map((w) => (w > 0 ? Math.min(1, Math.max(0, Math.log2(w * n) / top)) : 0));
  }
  function rampRGBA(level) {        // [r, g, b, alpha 0..1]: low to high, opacity max_alpha * level
    const lo = rgb(palette.attention_ramp.low), hi = rgb(palette.attention_ramp.high);
    return [0, 1, 2].map((k) => Math.round(lo[k] + (hi[k] - lo[k]) * level)).concat([palette.attention_ramp.max_alpha * level]);
  }
  const css = (c) => "rgba(" + c[0] + ", " + c[1] + ", " + c[2] + ", " + c[3].toFixed(3) + ")";

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

  // What a refusal means to the person using this page (the server's own message speaks to
  // whoever runs it: flags such as --max-body-mb mean nothing here). ctx: {text, fewshot}.
  function examplePlace(message) {      // support[2].entities[0] -> example 3, mark 1
    return message.replace(/support\[(\d+)\]\.entities\[(\d+)\]/g, (_, i, j) => "Example " + (+i + 1) + ", mark " + (+j + 1))
      .replace(/support\[(\d+)\](\.image)?/g, (_, i, im) => "Example " + (+i + 1) + (im ? "'s image" : ""));
  }
  function userMessage(status, data, ctx) {
    const code = (data && data.error) || "";
    const msg = (data && data.message) || "";
    const limits = (info && info.limits) || {};
    const ofExample = msg.match(/^support\[(\d+)\]/);
    const which = !ctx.fewshot ? "The photo" : ofExample ? "The image of example " + (+ofExample[1] + 1) : "The image of the tweet to tag";
    switch (code) {
      case "body_too_large":
        return ctx.fewshot ? "The examples and their images are too large to send together; remove some images or examples."
          : "The photo is too large to send, even shrunk by this page; choose a smaller photo.";
      case "image_too_large":
        return which + " is too large for this server (it takes files up to " + fmt(Math.round((limits.max_image_bytes || 0) / 1048576)) + " MB); choose a smaller one.";
      case "image_too_many_pixels":
        return which + " has too many pixels for this server; choose a smaller one.";
      case "unsupported_image":
        return which + " is not in a format the model can read; choose a JPEG, PNG, GIF or WebP file.";
      case "corrupt_image": case "bad_base64": case "empty_image":
        return which + " cannot be read (the file may be damaged or cut short); choose another image.";
      case "text_too_long": {
        const max = limits.max_text_chars;
        const where = ctx.fewshot && /support\[\d+\]/.test(msg) ? examplePlace(msg.split(":")[0]) : "The tweet";
        const n = (msg.match(/has ([\d,]+) characters/) || [])[1] || fmt(Array.from(ctx.text || "").length);
        return where + " is " + n + " characters long; this page reads at most " + (max ? fmt(max) : "a few thousand") + ". Shorten it.";
      }
      case "queue_full": return "The server is busy right now; try again in a few seconds.";
      case "timeout": return "The server took too long to answer; try again" + (ctx.fewshot ? " with fewer examples." : ".");
      case "body_timeout": return "The upload took too long; try again, with a smaller photo on a slow connection.";
      case "not_ready": return "The model is still loading; try again in a few seconds.";
      case "no_fewshot_model": return "This server cannot tag new types: it was started without a few-shot model.";
      case "internal_error": {
        const id = (msg.match(/id ([0-9a-f]+)/) || [])[1];
        return "Something went wrong on the server" + (id ? " (error " + id + ")" : "") + "; try again, and if it keeps failing, tell whoever runs this page" + (id ? " the error number." : ".");
      }
      case "empty_support": case "no_entity": case "bad_span": case "overlapping_spans": case "bad_type_name":
      case "empty_support_tweet": case "support_too_large": case "bad_support_file":
        return examplePlace(msg).replace(/; load a file saved by this page.*$/, "; load a file this page saved (JSONL with tokens and tags)");
      case "invalid_request": case "invalid_json": case "unsupported_media_type": case "invalid_form":
        return "The page sent something the server did not understand; reload the page and try again.";
      default:
        return "The server could not answer (status " + status + "); try again in a moment.";
    }
  }
  const unreachable = "The server cannot be reached: check your connection, or ask whoever runs this page whether it is still running.";

  // ------------------------------------------------------------------ model description and card
  function describe() {
    fetch("/model").then(async (r) => {
      const data = await r.json();
      if (r.status === 503 && data.error === "not_ready") {   // the server listens while the model loads
        $("model-line").textContent = "The model is still loading…";
        setTimeout(describe, 1000 * (parseInt(r.headers.get("Retry-After"), 10) || 1));
        return;
      }
      if (data.error) { $("model-line").textContent = userMessage(r.status, data, {}); return; }
      info = data;
      const enc = Object.entries(info.encoders || {}).map(([k, v]) => k + ": " + v).join(", ");
      $("caption-row").hidden = !(info.views || []).includes("caption");
      $("tabs").hidden = !info.fewshot;
      if (info.fewshot) describeFewshot(info.fewshot);
      showCard(info.card);
      $("model-line").textContent = "Model " + info.model_type + " (" + (info.variant || "") + "), types " +
        (info.entity_types || []).join(", ") + "; views " + (info.views.join(", ") || "text only") + "; " + enc +
        "; mner " + info.mner_version;
    }).catch(() => { $("model-line").textContent = "The page could not read the model's description; reload it."; });
  }
  paletteReady.then(describe);

  function fact(term, text) {
    const dt = document.createElement("dt"); dt.textContent = term;
    const dd = document.createElement("dd"); dd.textContent = text;
    $("card-facts").append(dt, dd);
  }
  function scoreText(s) {
    if (!s) return null;
    const where = s.split === "test" ? "on its test split" + (s.tweets ? " (" + fmt(s.tweets) + " tweets)" : "")
      : "on its dev split" + (s.epoch ? " (best epoch, " + s.epoch + ")" : "");
    const per = Object.entries(s.per_type || {}).filter(([, f]) => typeof f === "number").map(([t, f]) => t + " " + fix2(f)).join(", ");
    return "F1 " + fix2(s.f1) + " " + where + (per ? "; per type: " + per : "") + " (read from " + s.file + ")";
  }
  function showCard(card) {
    if (!card) return;
    $("card-facts").textContent = "";
    const enc = Object.entries(card.encoders || {}).map(([k, v]) => k + " encoder " + v).join(", ");
    fact("What it is", card.model + (card.variant && !card.model.startsWith(card.variant) ? " (" + card.variant + ")" : "") + "; it reads " + card.reads + (enc ? "; " + enc : "") + ".");
    fact("Trained on", card.trained_on ? card.trained_on + (card.demo ? " (the quickstart's demo corpus)" : "")
      : card.run ? "not recorded in its run folder (" + card.run + ")" : "unknown: the model was not served from a training run folder.");
    const score = scoreText(card.scores);
    fact("Measured", score ? score + "." : "no measurement: its run folder has no test_report.json, train_result.json or metrics.jsonl.");
    if (card.baseline) fact("Compared with", "the text-only tagger trained beside it: " + scoreText(card.baseline) + ".");
    $("card-types").textContent = "";
    Object.entries(card.types || {}).forEach(([t, meaning]) => {
      const li = document.createElement("li");
      const chip = document.createElement("span"); chip.className = "chip"; chip.style.background = colour(t); chip.textContent = t;
      li.append(chip, document.createTextNode(" " + meaning));
      $("card-types").appendChild(li);
    });
    $("card-summary").textContent = "About this model: " + (card.variant || card.model.split(":")[0]) +
      (card.scores ? ", " + card.scores.split + " F1 " + fix2(card.scores.f1) : ", not measured") + (card.demo ? " (a toy demo)" : "");
    const note = $("card-demo");
    note.hidden = !card.demo;
    if (card.demo) {
      note.textContent = "This is the quickstart's toy demo model. It learned from a few hundred invented tweets with " +
        "photos of faces, places, animals and things (mner's demo corpus), so it knows only those sentence patterns: " +
        "expect wrong types on real tweets. Its F1" + (card.scores ? " of " + fix2(card.scores.f1) : "") +
        " was measured on that demo corpus, not on real tweets.";
    }
  }

  // ------------------------------------------------------------------ images: shrunk in the browser
  // The model sees 224 x 224 pixels: a photo larger than MAX_SIDE on its long side (or a large
  // file) is drawn on a canvas MAX_SIDE pixels long and sent as a JPEG, so a phone photo of a
  // few MB travels as a few tens of kB. Smaller images are sent as they are.
  const MAX_SIDE = 448, MAX_KEEP_BYTES = 1024 * 1024;
  function readAsDataURL(blob) {
    return new Promise((resolve, reject) => { const r = new FileReader(); r.onload = () => resolve(r.result); r.onerror = reject; r.readAsDataURL(blob); });
  }
  async function prepareImage(file) {     // -> {data, name, note}
    let img = null;
    try { img = await createImageBitmap(file); } catch (err) { img = null; }   // decoded here, no request
    if (!img) return { data: await readAsDataURL(file), name: file.name, note: "" };  // the server judges it
    const w = img.width, h = img.height;
    if (Math.max(w, h) <= MAX_SIDE && file.size <= MAX_KEEP_BYTES) { img.close(); return { data: await readAsDataURL(file), name: file.name, note: "" }; }
    const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(w * scale)); canvas.height = Math.max(1, Math.round(h * scale));
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, canvas.width, canvas.height);   // transparency -> white, not black
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    img.close();
    const data = canvas.toDataURL("image/jpeg", 0.9);
    return { data: data, name: file.name, width: w, height: h,
      note: "Shrunk from " + fmt(w) + " × " + fmt(h) + " to " + canvas.width + " × " + canvas.height +
        " pixels before sending (" + fmt(Math.round(file.size / 1024)) + " kB to " + fmt(Math.round(data.length * 3 / 4 / 1024)) + " kB); the model sees 224 × 224." };
  }

  // ------------------------------------------------------------------ image choice (Tag tab)
  // The file input, the drop zone and the preview always name the same file (or none).
  let imageTurn = 0;       // a later choice wins over an earlier one still being read
  function clearImage() {
    imageTurn++;
    image = null; $("image").value = "";
    $("preview").hidden = true; $("preview").removeAttribute("src"); $("preview").alt = "";
    $("drop-label").textContent = "Drop an image here"; $("clear-image").hidden = true;
    $("image-note").hidden = true; $("image-note").textContent = "";
  }
  function useFile(file, dropped) {
    if (!file) return Promise.resolve();
    if (!file.type.startsWith("image/")) {
      clearImage();
      showError(file.name + " is not an image; choose a JPEG or PNG file");
      return Promise.resolve();
    }
    if (dropped) {            // the file input names the dropped file too
      try { const dt = new DataTransfer(); dt.items.add(file); $("image").files = dt.files; } catch (err) { $("image").value = ""; }
    }
    const turn = ++imageTurn;
    return prepareImage(file).then((prepared) => {
      if (turn !== imageTurn) return;
      image = prepared;
      $("preview").src = prepared.data;
      $("preview").hidden = false;
      $("preview").alt = "chosen image " + file.name;
      $("drop-label").textContent = file.name;
      $("clear-image").hidden = false;
      $("image-note").textContent = prepared.note; $("image-note").hidden = !prepared.note;
      showError("");
    }).catch(() => { if (turn === imageTurn) { clearImage(); showError(file.name + " cannot be read; choose another image."); } });
  }
  $("image").addEventListener("change", (e) => { if (e.target.files[0]) useFile(e.target.files[0], false); else clearImage(); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); useFile(e.dataTransfer.files[0], true); });
  drop.addEventListener("click", () => $("image").click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("image").click(); } });
  $("clear-image").addEventListener("click", () => { clearImage(); showError(""); $("drop").focus(); });

  // ------------------------------------------------------------------ try an example
  // The tweets the package ships (GET /examples): the quickstart's sentence with a face and with
  // a cat, then the sample corpus' invented tweets; each press takes the next one and tags it.
  let examples = null, nextExample = 0;
  $("example").addEventListener("click", async () => {
    const button = $("example");
    button.disabled = true;
    try {
      if (!examples) {
        button.textContent = "Loading the examples…";
        const r = await fetch("/examples");
        const data = await r.json();
        if (!r.ok) { showError(userMessage(r.status, data, {})); return; }
        examples = data.examples;
      }
      if (!examples.length) { showError("This server has no example to show."); return; }
      const k = nextExample % examples.length;
      const ex = examples[k];
      nextExample++;
      $("text").value = ex.text;
      if (!$("caption-row").hidden) $("caption").value = ex.caption || "";
      if (ex.image) {
        const blob = await (await fetch(ex.image)).blob();
        await useFile(new File([blob], "example-" + (k + 1) + ".jpg", { type: "image/jpeg" }), true);
      } else clearImage();
      $("example-source").textContent = "Example " + (k + 1) + " of " + examples.length + ": " + ex.source + ".";
      $("example-source").hidden = false;
      $("form").requestSubmit();
    } catch (err) {
      showError(unreachable);
    } finally {
      button.disabled = false; button.textContent = "Try an example";
    }
  });

  // ------------------------------------------------------------------ tagging
  $("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); $("form").requestSubmit(); } });
  $("text").addEventListener("input", () => { $("example-source").hidden = true; });
  $("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (!text.trim()) { showError("Type or paste a tweet first."); $("text").focus(); return; }
    const body = { text: text, explain: true };
    const sent = image;
    if (sent) body.image = sent.data;
    const caption = $("caption").value;
    if (!$("caption-row").hidden && caption.trim()) body.caption = caption;
    $("tag").disabled = true; $("tag").textContent = "Tagging…";
    try {
      const r = await fetch("/predict", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const data = await r.json();
      if (!r.ok) { clearResult(); showError(userMessage(r.status, data, { text: text })); return; }
      showError("");
      lastResult = { text: text, image: sent ? sent.data : null, data: data };
      render(lastResult);
    } catch (err) {
      clearResult();
      showError(unreachable);
    } finally {
      $("tag").disabled = false; $("tag").textContent = "Tag";
    }
  });

  function clearResult() {   // an answer that failed leaves no earlier answer on the page
    lastResult = null;
    $("result").hidden = true; $("explanation").hidden = true;
    $("tweet").textContent = ""; $("legend").textContent = ""; $("match").textContent = ""; $("timing").textContent = "";
    $("entity-list").textContent = "";
  }

  function render(res) {
    drawEntities($("tweet"), res.text, res.data.entities, explain);
    listEntities($("entity-list"), res.data.entities, explain);
    renderRest(res);
    reveal($("result"));
    const ents = res.data.entities;
    announce(ents.length ? ents.length + (ents.length === 1 ? " entity: " : " entities: ") +
      ents.map((e) => e.text + " (" + e.type + ")").join(", ") + ". " + $("match").textContent : "No entity found.");
  }

  // entities: offsets in code points (as the service sends them)
  function drawEntities(tweet, text, entities, onChoose, label) {
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
      b.setAttribute("aria-label", label ? label(ent) : ent.text + ": " + ent.type + ", confidence " + ent.confidence.toFixed(2) + ". Press to see what it looked at");
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

  // every entity on a line of its own: type, words, confidence (seen without hovering)
  function listEntities(list, entities, onChoose) {
    list.textContent = "";
    entities.forEach((ent, i) => {
      const li = document.createElement("li");
      const chip = document.createElement("span"); chip.className = "chip"; chip.style.background = colour(ent.type); chip.textContent = ent.type;
      const words = document.createElement("span"); words.className = "words"; words.textContent = ent.text;
      const conf = document.createElement("span"); conf.className = "confidence"; conf.dataset.value = String(ent.confidence);
      conf.textContent = "confidence " + ent.confidence.toFixed(2);
      const bar = document.createElement("span"); bar.className = "bar"; bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span"); fill.style.width = Math.round(100 * ent.confidence) + "%"; bar.appendChild(fill);
      li.append(chip, " ", words, " ", conf, bar);
      list.appendChild(li);
    });
  }

  function meaning(type) { return info && info.card && info.card.types ? info.card.types[type] : null; }

  function renderRest(res) {
    const legend = $("legend");
    legend.textContent = "";
    if (!res.data.entities.length) legend.textContent = "No entity found.";
    [...new Set(res.data.entities.map((e) => e.type))].forEach((t) => {
      const s = document.createElement("span"); s.style.background = colour(t); s.textContent = t;
      const m = meaning(t);
      legend.appendChild(s);
      if (m) { const d = document.createElement("span"); d.className = "meaning"; d.textContent = m; legend.appendChild(d); }
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
    document.querySelectorAll("#tweet .entity").forEach((b) => b.setAttribute("aria-pressed", b.dataset.index === String(i) ? "true" : "false"));
    $("explanation-title").textContent = "What \u201c" + ent.text + "\u201d (" + ent.type + ") looked at";
    const ex = ent.explanation || {};
    $("no-explanation").hidden = !!(ex.pixels || ex.caption);
    $("heat-wrap").hidden = !ex.pixels;
    $("caption-heat").hidden = !ex.caption;
    $("attention-scale").hidden = !(ex.pixels || ex.caption);
    if (ex.pixels || ex.caption) drawScale();
    const notes = [];
    if (ex.pixels && lastResult.image) { drawHeat(ex.pixels); notes.push(uniformNote(ex.pixels, "image region", "the image")); }
    if (ex.caption) { drawCaption(ex.caption); notes.push(uniformNote(ex.caption, "caption word", "the caption")); }
    const near = notes.filter((n) => n.near);
    $("uniform-note").hidden = !near.length;
    $("uniform-note").textContent = near.map((n) => n.text).join(" ");
    $("heat-caption").textContent = ex.pixels ? heatCaption(ex.pixels) : "";
    $("caption-note").hidden = !ex.caption;
    $("caption-note").textContent = ex.caption ? "Each of the caption's " + ex.caption.weights.length + " sub-words is shaded by how many " +
      "times its even share of the entity's attention it got (the scale below); the most-attended got " + ratioOf(ex.caption).toFixed(1) +
      " times its share." : "";
    $("explanation").hidden = false;
    reveal($("explanation"));
  }

  function ratioOf(view) { return view.max_ratio !== undefined && view.max_ratio !== null ? view.max_ratio : Math.max(...view.weights) * view.weights.length; }
  function uniformNote(view, unit, whole) {
    const ratio = ratioOf(view), near = view.near_uniform !== undefined ? view.near_uniform : ratio < palette.attention_scale.near_uniform;
    return { near: near, text: near
      ? "Attention is near uniform: no " + unit + " got even " + palette.attention_scale.near_uniform + " times its even share (at most " +
        ratio.toFixed(1) + " times). The entity did not look at any part of " + whole + " in particular; the colours below show almost nothing, and that is the finding."
      : "" };
  }
  function heatCaption(px) {
    const n = px.weights.length;
    return "The overlay colours each of the " + n + " image regions by how many times its even share of the entity's attention " +
      "(1/" + n + " of it) the region got: clear at its share or less, full red at " + palette.attention_scale.top +
      " times or more (the scale below). The most-attended region got " + ratioOf(px).toFixed(1) + " times its share. " +
      "Attention of the entity's words in the model's cross-modal interaction (last block, heads averaged).";
  }

  function drawScale() {
    const bar = $("scale-bar"), ctx = bar.getContext("2d");
    const cells = ctx.createImageData(bar.width, 1);
    for (let x = 0; x < bar.width; x++) {
      const c = rampRGBA(x / (bar.width - 1));
      cells.data.set([c[0], c[1], c[2], Math.round(255 * c[3])], 4 * x);
    }
    ctx.putImageData(cells, 0, 0);
    const top = palette.attention_scale.top, ticks = $("scale-ticks");
    ticks.textContent = "";
    for (let t = 1; t <= top; t *= 2) {
      const s = document.createElement("span");
      s.style.left = (100 * Math.log2(t) / Math.log2(top)) + "%";
      s.textContent = t + "×" + (t === top ? " or more" : "");
      ticks.appendChild(s);
    }
    $("attention-scale").setAttribute("aria-label", "colour scale: clear at 1 times the even share of attention, " +
      "yellow to red up to " + top + " times or more");
  }

  function drawHeat(px) {
    const img = $("heat-image");
    const paint = () => {
      const canvas = $("heatmap");
      const [h, w] = px.grid;
      canvas.width = w; canvas.height = h;     // one canvas pixel per region, stretched by CSS
      canvas.style.imageRendering = "auto";
      const ctx = canvas.getContext("2d");
      const cells = ctx.createImageData(w, h);
      levels(px.weights).forEach((level, k) => {   // relative to uniform: a uniform map stays clear
        const c = rampRGBA(level);
        cells.data.set([c[0], c[1], c[2], Math.round(255 * c[3])], 4 * k);
      });
      ctx.putImageData(cells, 0, 0);
      canvas.dataset.max = String(Math.max(...px.weights));
      canvas.dataset.maxRatio = String(ratioOf(px));
    };
    if (img.getAttribute("src") !== lastResult.image) { img.onload = paint; img.src = lastResult.image; } else paint();
  }

  function drawCaption(cap) {
    const el = $("caption-heat");
    el.textContent = "";
    const lv = levels(cap.weights), n = cap.weights.length;
    (cap.tokens || cap.weights.map((_, k) => "#" + k)).forEach((tok, k) => {
      const s = document.createElement("span");
      s.textContent = tok;
      s.title = "attention " + cap.weights[k].toFixed(3) + " (" + (cap.weights[k] * n).toFixed(1) + " times its even share)";
      s.style.background = css(rampRGBA(lv[k]));
      el.appendChild(s);
    });
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

  function describeFewshot(fs) {
    const views = fs.views || [];
    const reads = views.includes("pixels") && views.includes("caption") ? "the text, an image and its caption"
      : views.includes("pixels") ? "the text and an image" : views.includes("caption") ? "the text and an image caption" : "the text only";
    const about = [fs.name !== fs.model_type ? fs.model_type : null, fs.checkpoint].filter(Boolean).join(", ");
    $("fs-model").textContent = "New types are tagged by the few-shot model " + fs.name + (about ? " (" + about + ")" : "") +
      "; it reads " + reads + " of each example and of the tweet to tag.";
    $("fs-image-row").hidden = !views.includes("pixels");
    $("fs-query-image-row").hidden = !views.includes("pixels");
    $("fs-caption-row").hidden = !views.includes("caption");
    $("fs-query-caption-row").hidden = !views.includes("caption");
  }

  // support: [{text, entities: [{start, end, type}], caption, image: {data, name} | null, image_name}], offsets in code points
  const support = [];
  let current = [];             // marks of the example being annotated (code points)
  let fsImage = null;           // its image ({data, name, note}) or, loaded from a file, {data: null, name}
  let editing = -1;             // the index of the example being edited, or -1
  let cancelled = null;         // the example under edit, as it was (put back by Cancel)
  function marked(text, spans) {
    const cps = Array.from(text);
    return spans.slice().sort((a, b) => a.start - b.start)
      .map((e) => ({ text: cps.slice(e.start, e.end).join(""), type: e.type, start: e.start, end: e.end, confidence: 1 }));
  }
  function showCurrent() {
    const text = $("fs-example").value;
    const ents = marked(text, current);
    if (!ents.length) { $("fs-current").textContent = text ? "(no span marked yet)" : ""; return; }
    // each mark is a button: pressing it unmarks it
    drawEntities($("fs-current"), text, ents, (i) => {
      const gone = ents[i];
      current = current.filter((c) => !(c.start === gone.start && c.end === gone.end));
      showCurrent();
      announce("Unmarked " + gone.text + " (" + gone.type + ").");
      const next = $("fs-current").querySelector(".entity");
      (next || $("fs-example")).focus();
    }, (e) => e.text + ": " + e.type + ". Press to unmark");
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
    addType(type);
    showCurrent();
  });
  function addType(type) {
    if (![...$("fs-types").options].some((o) => o.value === type)) {
      const o = document.createElement("option"); o.value = type; $("fs-types").appendChild(o);
    }
  }

  // the example's image and caption
  function showFsImage() {
    $("fs-image-name").textContent = !fsImage ? "" : fsImage.data ? "Image: " + fsImage.name + (fsImage.note ? ". " + fsImage.note : "")
      : "The file names the image " + fsImage.name + ": choose it again to use it here.";
    $("fs-image-clear").hidden = !fsImage;
  }
  $("fs-image").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) { fsImage = null; showFsImage(); return; }
    if (!file.type.startsWith("image/")) { fsImage = null; $("fs-image").value = ""; showFsImage(); showError(file.name + " is not an image; choose a JPEG or PNG file"); return; }
    fsImage = await prepareImage(file);
    showFsImage();
  });
  $("fs-image-clear").addEventListener("click", () => { fsImage = null; $("fs-image").value = ""; showFsImage(); $("fs-image").focus(); });
  let queryImage = null;
  $("fs-query-image").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    queryImage = file && file.type.startsWith("image/") ? await prepareImage(file) : null;
  });

  function resetEditor() {
    $("fs-example").value = ""; current = []; fsImage = null; $("fs-image").value = ""; $("fs-caption").value = "";
    editing = -1; $("fs-add").textContent = "Add the example"; $("fs-cancel").hidden = true;
    showFsImage(); showCurrent();
  }
  $("fs-add").addEventListener("click", () => {
    const text = $("fs-example").value;
    if (!text.trim() || !current.length) { showError("Type an example tweet and mark at least one span in it."); return; }
    showError("");
    const caption = $("fs-caption-row").hidden ? null : ($("fs-caption").value.trim() ? $("fs-caption").value : null);
    const ex = { text: text, entities: marked(text, current).map((e) => ({ start: e.start, end: e.end, type: e.type })),
      caption: caption, image: fsImage && fsImage.data ? { data: fsImage.data, name: fsImage.name } : null,
      image_name: fsImage ? fsImage.name : null };
    const at = editing;
    if (at >= 0) support.splice(at, 0, ex); else support.push(ex);
    cancelled = null;
    showSupport();
    announce((at >= 0 ? "Example " + (at + 1) + " saved" : "Example " + support.length + " added") + ": " +
      ex.entities.map((e) => Array.from(text).slice(e.start, e.end).join("") + " (" + e.type + ")").join(", ") + ".");
    resetEditor();
    $("fs-example").focus();
  });
  $("fs-cancel").addEventListener("click", () => {
    if (editing >= 0 && cancelled) { support.splice(editing, 0, cancelled); cancelled = null; showSupport(); }
    resetEditor(); $("fs-example").focus();
  });

  function showSupport() {
    const list = $("fs-support");
    list.textContent = "";
    support.forEach((ex, i) => {
      const li = document.createElement("li");
      const p = document.createElement("p"); p.className = "tweet";
      drawEntities(p, ex.text, marked(ex.text, ex.entities), null, (e) => e.text + ": " + e.type);
      li.appendChild(p);
      const extras = [];
      if (ex.caption) extras.push("caption: " + ex.caption);
      if (ex.image_name) extras.push("image: " + ex.image_name + (ex.image ? "" : " (not loaded: edit the example to choose it)"));
      if (extras.length) { const m = document.createElement("p"); m.className = "muted"; m.textContent = extras.join("; "); li.appendChild(m); }
      const short = Array.from(ex.text).slice(0, 40).join("");
      const edit = document.createElement("button"); edit.type = "button"; edit.className = "small"; edit.textContent = "Edit";
      edit.setAttribute("aria-label", "Edit example " + (i + 1) + ": " + short);
      edit.addEventListener("click", () => editExample(i));
      const remove = document.createElement("button"); remove.type = "button"; remove.className = "small fs-remove"; remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove example " + (i + 1) + ": " + short);
      remove.addEventListener("click", () => {
        support.splice(i, 1);
        showSupport();
        announce("Example " + (i + 1) + " removed; " + support.length + " left.");
        const buttons = document.querySelectorAll("#fs-support .fs-remove");
        (buttons[Math.min(i, buttons.length - 1)] || $("fs-example")).focus();
      });
      li.append(edit, " ", remove);
      list.appendChild(li);
    });
    $("fs-empty").hidden = support.length > 0;
  }
  function editExample(i) {
    if (editing >= 0 && cancelled) { support.splice(editing, 0, cancelled); cancelled = null; }
    const ex = support.splice(i, 1)[0];
    cancelled = ex; editing = i;
    showSupport();
    $("fs-example").value = ex.text;
    current = ex.entities.map((e) => Object.assign({}, e));
    fsImage = ex.image ? { data: ex.image.data, name: ex.image.name, note: "" } : ex.image_name ? { data: null, name: ex.image_name } : null;
    $("fs-image").value = "";
    $("fs-caption").value = ex.caption || "";
    $("fs-add").textContent = "Save the example"; $("fs-cancel").hidden = false;
    showFsImage(); showCurrent();
    $("fs-example").focus();
    reveal($("fs-example"));
  }
  showSupport();

  function supportBody(withImages) {
    return support.map((ex) => {
      const out = { text: ex.text, entities: ex.entities };
      if (ex.caption) out.caption = ex.caption;
      if (withImages && ex.image) out.image = ex.image.data;
      if (ex.image_name) out.image_name = ex.image_name;
      return out;
    });
  }

  // save the examples as the JSONL mner fewshot predict --support reads (the server writes the
  // tokens and tags, the same conversion a prediction uses); load one back
  $("fs-export").addEventListener("click", async () => {
    if (!support.length) { showError("Add at least one annotated example first."); return; }
    try {
      const r = await fetch("/fewshot/export", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ support: supportBody(false) }) });
      if (!r.ok) { showError(userMessage(r.status, await r.json(), { fewshot: true })); return; }
      const url = URL.createObjectURL(await r.blob());
      const a = document.createElement("a"); a.href = url; a.download = "support.jsonl";
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      showError("");
      announce("Saved " + support.length + " examples as support.jsonl.");
    } catch (err) { showError(unreachable); }
  });
  $("fs-load").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    try {
      const r = await fetch("/fewshot/import?name=" + encodeURIComponent(file.name),
        { method: "POST", headers: { "content-type": "application/x-ndjson" }, body: await file.text() });
      const data = await r.json();
      if (!r.ok) { showError(userMessage(r.status, data, { fewshot: true })); return; }
      data.support.forEach((ex) => {
        support.push({ text: ex.text, entities: ex.entities, caption: ex.caption || null, image: null, image_name: ex.image_name || null });
        ex.entities.forEach((en) => addType(en.type));
      });
      showSupport();
      showError("");
      announce("Loaded " + data.support.length + " examples from " + file.name + "; " + support.length + " in all.");
    } catch (err) { showError(unreachable); } finally { $("fs-load").value = ""; }
  });

  $("fs-tag").addEventListener("click", async () => {
    const text = $("fs-text").value;
    if (!support.length) { showError("Add at least one annotated example first."); return; }
    if (!text.trim()) { showError("Type a tweet to tag."); $("fs-text").focus(); return; }
    $("fs-tag").disabled = true;
    const body = { support: supportBody(true), text: text };
    if (!$("fs-query-caption-row").hidden && $("fs-query-caption").value.trim()) body.caption = $("fs-query-caption").value;
    if (!$("fs-query-image-row").hidden && queryImage) body.image = queryImage.data;
    try {
      const r = await fetch("/fewshot/predict", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify(body) });
      const data = await r.json();
      if (!r.ok) { $("fs-result").hidden = true; showError(userMessage(r.status, data, { fewshot: true, text: text })); return; }
      showError("");
      drawEntities($("fs-tweet"), text, data.entities, null);
      listEntities($("fs-entity-list"), data.entities, null);
      $("fs-result").hidden = false;
      reveal($("fs-result"));
      announce(data.entities.length ? data.entities.length + " entities: " +
        data.entities.map((e) => e.text + " (" + e.type + ")").join(", ") : "No entity of these types found.");
    } catch (err) {
      $("fs-result").hidden = true;
      showError(unreachable);
    } finally { $("fs-tag").disabled = false; }
  });
})();
