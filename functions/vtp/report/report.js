// vtp job report: draws the page from the JSON in #report-data (see functions/vtp/report/page.py).
// Plain JavaScript, no framework; the only scripts it loads are player/hls.min.js and player/dash.all.min.js,
// beside the page, when the player first needs them.
//
// For tests (and the curious), window.vtpReport:
//   data                    the report data
//   ready                   a player is attached and has read its manifest: rungs can be chosen
//   format, rung            "hls" | "dash", "auto" | a rendition name
//   errors                  player errors: {format, fatal, type, details, message, at}
//   message                 what the player area says instead of playing (file://, no player scripts...), or null
//   setFormat(f), setRung(name), play(), pause(), seek(t), state()
(function () {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";
  const NONE = "\u2014";  // em dash: no value
  const STAGES = ["split", "analyse", "fit", "encode", "audio", "merge"];
  const PLAYER_SCRIPTS = {hls: "player/hls.min.js", dash: "player/dash.all.min.js"};

  const data = JSON.parse(document.getElementById("report-data").textContent);
  const playersInstalled = document.body.getAttribute("data-players") === "installed";

  const api = window.vtpReport = {
    data: data,
    ready: false,
    format: null,
    rung: "auto",
    errors: [],
    message: null,
    setFormat: function (format) { return setFormat(format); },
    setRung: function (name) { setRung(name); },
    play: function () { return playVideo(); },
    pause: function () { if (video) video.pause(); },
    seek: function (t) { if (video) video.currentTime = t; },
    state: function () { return playerState(); },
  };

  // ------------------------------------------------------------------ helpers

  function $(id) { return document.getElementById(id); }

  function setAttributes(node, attrs) {
    Object.keys(attrs || {}).forEach(function (key) {
      const value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
  }
  function append(node, children) {
    if (children === null || children === undefined) return node;
    (Array.isArray(children) ? children : [children]).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    });
    return node;
  }
  function h(tag, attrs, children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    return append(node, children);
  }
  function s(tag, attrs, children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attrs);
    return append(node, children);
  }
  function svgTitle(text) { return s("title", {text: text}); }

  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmtInt(v) { return isNum(v) ? Math.round(v).toLocaleString("en-US") : NONE; }
  function fmtFixed(v, digits) {
    return isNum(v) ? v.toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits}) : NONE;
  }
  function fmtBytes(v) {
    if (!isNum(v)) return NONE;
    const units = ["B", "kB", "MB", "GB", "TB"];
    let x = v, i = 0;
    while (Math.abs(x) >= 1000 && i < units.length - 1) { x /= 1000; i++; }
    return (i === 0 ? String(Math.round(x)) : x.toFixed(Math.abs(x) < 10 ? 2 : Math.abs(x) < 100 ? 1 : 0)) + " " + units[i];
  }
  function fmtSeconds(v) {
    if (!isNum(v)) return NONE;
    const a = Math.abs(v);
    if (a < 10) return v.toFixed(2) + " s";
    if (a < 120) return v.toFixed(1) + " s";
    const hours = Math.floor(a / 3600), minutes = Math.floor((a % 3600) / 60), seconds = Math.round(a % 60);
    const sign = v < 0 ? "-" : "";
    if (hours) return sign + hours + " h " + String(minutes).padStart(2, "0") + " min";
    return sign + minutes + " min " + String(seconds).padStart(2, "0") + " s";
  }
  function fmtClock(t) {
    if (!isNum(t) || t < 0) t = 0;
    const total = Math.floor(t), hours = Math.floor(total / 3600), minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    return hours ? hours + ":" + String(minutes).padStart(2, "0") + ":" + seconds : minutes + ":" + seconds;
  }
  function significantDigits(v, significant) {
    if (v === 0) return 2;
    return Math.min(12, Math.max(2, significant - 1 - Math.floor(Math.log10(Math.abs(v)))));
  }
  function trimZeros(text) { return text.indexOf(".") < 0 ? text : text.replace(/0+$/, "").replace(/\.$/, ""); }
  function currencySymbol() {
    const currency = (data.cost && data.cost.currency) || "USD";
    return currency === "USD" ? "$" : currency + " ";
  }
  function fmtMoney(v) {  // cents from 1 up, 4 significant digits below (at least 2 decimals)
    if (!isNum(v)) return NONE;
    if (Math.abs(v) >= 1) return currencySymbol() + v.toFixed(2);
    let text = trimZeros(v.toFixed(significantDigits(v, 4)));
    const decimals = text.indexOf(".") < 0 ? 0 : text.length - text.indexOf(".") - 1;
    if (decimals < 2) text = v.toFixed(2);
    return currencySymbol() + text;
  }
  function fmtPrice(v) {  // a unit price: up to 6 significant digits
    if (!isNum(v)) return NONE;
    return currencySymbol() + trimZeros(v.toFixed(significantDigits(v, 6)));
  }
  function fmtQuantity(v) {
    if (!isNum(v)) return NONE;
    if (Math.abs(v) >= 1000) return fmtInt(v);
    return trimZeros(v.toFixed(significantDigits(v, 4)));
  }
  function frameRate(value) {
    if (isNum(value)) return value;
    const match = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(\d+(?:\.\d+)?))?\s*$/.exec(String(value || ""));
    if (!match) return null;
    const rate = Number(match[1]) / (match[2] ? Number(match[2]) : 1);
    return isFinite(rate) ? rate : null;
  }
  function fmtFrameRate(value) {
    const rate = frameRate(value);
    return rate === null ? NONE : trimZeros(rate.toFixed(3)) + " fps";
  }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  // Round tick steps: 1, 2, 5 x 10^k, about `count` ticks over [0, max].
  function ticks(max, count) {
    if (!(max > 0)) return {step: 1, values: [0, 1], max: 1};
    const raw = max / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * power; }).find(function (m) { return m >= raw; });
    const top = Math.ceil(max / step - 1e-9) * step;
    const values = [];
    for (let v = 0; v <= top + step / 2; v += step) values.push(Number(v.toPrecision(12)));
    return {step: step, values: values, max: top};
  }
  function fmtTick(v, step) {
    const digits = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
    return v.toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
  }

  function section(id, title, intro) {
    const node = $(id);
    node.hidden = false;
    append(node, h("h2", {text: title}));
    if (intro) append(node, h("p", {class: "intro", text: intro}));
    return node;
  }

  // ------------------------------------------------------------------ summary

  function sourceFacts(src) {
    if (!src) return NONE;
    const parts = [];
    if (isNum(src.width) && isNum(src.height)) parts.push(src.width + "\u00d7" + src.height);
    if (src.frame_rate !== undefined && src.frame_rate !== null) parts.push(fmtFrameRate(src.frame_rate));
    if (isNum(src.duration_s)) parts.push(fmtSeconds(src.duration_s));
    if (isNum(src.frames)) parts.push(fmtInt(src.frames) + " frames");
    if (src.video_codec) parts.push(src.video_codec + (src.container ? " in " + src.container : ""));
    if (isNum(src.size_bytes)) parts.push(fmtBytes(src.size_bytes));
    if (src.has_audio === true) parts.push("with audio");
    if (src.has_audio === false) parts.push("no audio");
    if (src.rotation) parts.push("rotated " + src.rotation + "\u00b0");
    if (src.variable_frame_rate) parts.push("variable frame rate");
    if (src.interlaced) parts.push("interlaced");
    return parts.join(" \u00b7 ");
  }

  function renderSummary() {
    const header = $("summary");
    const status = String(data.status || "UNKNOWN");
    append(header, h("div", {class: "title-row"}, [
      h("h1", {id: "job-id", text: data.job_id || "job"}),
      h("span", {id: "status", class: "badge badge-" + status.toLowerCase(), text: status}),
      h("span", {class: "where", text: data.where === "aws" ? "on AWS" : data.where === "local" ? "on this machine" : ""}),
    ]));
    const timeline = data.timeline || {};
    const facts = [
      ["Input", h("code", {text: data.input || NONE})],
      ["Source", sourceFacts(data.source)],
      ["Finished", data.finished_at || NONE],
      ["Total time", fmtSeconds(timeline.total_s)],
      ["Critical path", isNum(timeline.critical_path_s)
        ? fmtSeconds(timeline.critical_path_s) + " (split + the encoders' span + merge)" : NONE],
    ];
    if (data.renditions && data.renditions.length) {
      facts.push(["Ladder", data.renditions.map(function (r) { return r.name; }).join(", ")
        + (data.audio ? " + audio" : "")]);
    }
    const list = h("dl", {class: "facts"});
    facts.forEach(function (fact) { append(list, [h("dt", {text: fact[0]}), h("dd", null, fact[1])]); });
    append(header, list);
  }

  function renderFailure() {
    if (String(data.status) !== "FAILED" && !data.error) return;
    const box = $("failure");
    box.hidden = false;
    const error = data.error || {};
    append(box, [
      h("h2", {text: "The job failed" + (data.failed_stage ? " in the " + data.failed_stage + " stage" : "")}),
      h("p", {class: "reason"}, [
        h("span", {class: "label", text: "Reason"}),
        h("code", {id: "failure-code", text: error.code || "UNKNOWN"}),
      ]),
      h("p", {id: "failure-message", class: "message", text: error.message || "No message was recorded."}),
      h("p", {class: "hint", text: data.timeline && data.timeline.bars && data.timeline.bars.length
        ? "The timeline below shows the job up to the failure."
        : "No stage timing was recorded before the failure."}),
    ]);
  }

  // ------------------------------------------------------------------ player

  let video = null;
  let hls = null;
  let dash = null;
  let generation = 0;      // bumped on each format switch: late events of an old player are ignored
  let selectedHeight = null;
  let cues = [];           // thumbnail cues: {start, end, url, x, y, w, h}
  let ui = {};

  function absolute(path) { return new URL(path, location.href).href; }

  function recordError(format, fatal, type, details, message) {
    api.errors.push({
      format: format, fatal: !!fatal, type: String(type), details: String(details),
      message: String(message || ""), at: video ? video.currentTime : 0,
    });
    if (fatal) showMessage((format ? format.toUpperCase() + " player error: " : "Player error: ") + details
      + (message ? " \u2014 " + message : ""), "error");
  }

  function showMessage(text, kind) {
    api.message = text;
    if (!ui.message) return;
    ui.message.textContent = text;
    ui.message.className = "player-message " + (kind || "info");
    ui.message.hidden = false;
  }
  function hideMessage() {
    api.message = null;
    if (ui.message) ui.message.hidden = true;
  }

  function icon(paths) {
    return s("svg", {viewBox: "0 0 24 24", width: 18, height: 18, "aria-hidden": "true"},
      paths.map(function (d) { return s("path", {d: d}); }));
  }
  const ICONS = {
    play: ["M7 4.5v15l12.5-7.5z"],
    pause: ["M6.5 4.5h4v15h-4z", "M13.5 4.5h4v15h-4z"],
    sound: ["M4 9h4l5-4.5v15L8 15H4z", "M16 8.5a5 5 0 0 1 0 7l-1.2-1.2a3.3 3.3 0 0 0 0-4.6z"],
    muted: ["M4 9h4l5-4.5v15L8 15H4z", "M15.5 9.2l1.2-1.2 2 2 2-2 1.2 1.2-2 2 2 2-1.2 1.2-2-2-2 2-1.2-1.2 2-2z"],
    fullscreen: ["M4 4h6v2H6v4H4z", "M14 4h6v6h-2V6h-4z", "M4 14h2v4h4v2H4z", "M18 14h2v6h-6v-2h4z"],
  };
  function setIcon(button, name) {
    button.replaceChildren(icon(ICONS[name]));
  }

  function knownDuration() {
    if (video && isNum(video.duration) && video.duration > 0) return video.duration;
    const first = (data.renditions || [])[0];
    if (first && isNum(first.duration_s)) return first.duration_s;
    return data.source && isNum(data.source.duration_s) ? data.source.duration_s : 0;
  }

  function renderPlayer() {
    const player = data.player;
    if (!player) return;
    const node = section("player-section", "Player");
    const renditions = data.renditions || [];

    video = h("video", {id: "video", playsinline: true, preload: "metadata",
      poster: player.poster ? player.poster : null});
    ui.message = h("div", {id: "player-message", class: "player-message", role: "status", hidden: true});
    ui.play = h("button", {id: "play", type: "button", class: "icon", title: "Play (k)", "aria-label": "Play"});
    setIcon(ui.play, "play");
    ui.time = h("span", {id: "time", class: "time", text: "0:00 / " + fmtClock(knownDuration())});
    ui.buffered = h("div", {class: "seek-buffered"});
    ui.played = h("div", {class: "seek-played"});
    ui.handle = h("div", {class: "seek-handle"});
    ui.tile = h("div", {class: "seek-tile", hidden: true});
    ui.previewTime = h("span", {class: "seek-preview-time"});
    ui.preview = h("div", {class: "seek-preview", hidden: true}, [ui.tile, ui.previewTime]);
    ui.seek = h("div", {id: "seek", class: "seek", role: "slider", tabindex: "0", "aria-label": "Seek",
      "aria-valuemin": "0", "aria-valuemax": String(Math.round(knownDuration())), "aria-valuenow": "0"},
    [h("div", {class: "seek-track"}, [ui.buffered, ui.played]), ui.handle, ui.preview]);
    ui.mute = h("button", {id: "mute", type: "button", class: "icon", title: "Mute (m)", "aria-label": "Mute"});
    setIcon(ui.mute, "sound");
    ui.fullscreen = h("button", {id: "fullscreen", type: "button", class: "icon", title: "Full screen (f)",
      "aria-label": "Full screen"});
    setIcon(ui.fullscreen, "fullscreen");

    ui.formats = h("div", {class: "segmented", role: "group", "aria-label": "Format"}, [
      h("button", {type: "button", "data-format": "hls", title: "HLS (" + player.hls + ") played by hls.js",
        text: "HLS \u00b7 hls.js"}),
      h("button", {type: "button", "data-format": "dash", title: "DASH (" + player.dash + ") played by dash.js",
        text: "DASH \u00b7 dash.js"}),
    ]);
    ui.rungs = h("div", {class: "segmented", role: "group", "aria-label": "Rung"}, [
      h("button", {type: "button", "data-rung": "auto", title: "Adaptive: the player chooses", text: "Auto"}),
    ].concat(renditions.map(function (r) {
      return h("button", {type: "button", "data-rung": r.name, text: r.name,
        title: r.width + "\u00d7" + r.height + ", " + fmtInt(r.measured_bitrate_kbps) + " kbit/s on average"});
    })));
    ui.nowPlaying = h("span", {id: "now-playing", class: "now-playing", text: ""});

    ui.box = h("div", {class: "player", tabindex: "-1"}, [
      h("div", {class: "video-box"}, [video, ui.message]),
      h("div", {class: "controls"}, [ui.play, ui.time, ui.seek, ui.mute, ui.fullscreen]),
    ]);
    append(node, [
      ui.box,
      h("div", {class: "player-options"}, [
        h("span", {class: "option-label", text: "Format"}), ui.formats,
        h("span", {class: "option-label", text: "Rung"}), ui.rungs,
        ui.nowPlaying,
      ]),
    ]);
    markButtons();

    if (!playersInstalled) {
      disableControls();
      showMessage("The player scripts (hls.js, dash.js) were not installed when this report was made, so it has "
        + "no player. Run scripts/setup.sh (it needs npm), then `vtp report " + (data.job_id || "JOB_ID")
        + "` to make the page again.", "warning");
      return;
    }
    if (location.protocol === "file:") {
      disableControls();
      showMessage("This page was opened from a file: browsers do not let such a page load the video. Serve it "
        + "over HTTP instead: `vtp report " + (data.job_id || "JOB_ID") + " --open` does that.", "warning");
      return;
    }

    wireControls();
    if (player.thumbnails) loadThumbnails(player.thumbnails);
    setFormat("hls");
  }

  function disableControls() {
    ui.box.classList.add("disabled");
    ui.box.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    ui.formats.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    ui.rungs.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    ui.seek.setAttribute("aria-disabled", "true");
    ui.seek.removeAttribute("tabindex");
  }

  function markButtons() {
    if (!ui.formats) return;
    ui.formats.querySelectorAll("button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-format") === api.format));
    });
    ui.rungs.querySelectorAll("button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-rung") === api.rung));
    });
  }

  function playVideo() {
    if (!video) return Promise.resolve();
    return video.play().catch(function (e) {
      // Interrupted by a format switch or a pause: not an error; anything else is shown.
      if (e && e.name !== "AbortError") showMessage("The browser did not start playback: " + e.message, "warning");
    });
  }

  function wireControls() {
    ui.play.addEventListener("click", function () { if (video.paused || video.ended) playVideo(); else video.pause(); });
    video.addEventListener("click", function () { if (video.paused || video.ended) playVideo(); else video.pause(); });
    ui.mute.addEventListener("click", function () { video.muted = !video.muted; });
    ui.fullscreen.addEventListener("click", function () {
      if (document.fullscreenElement) document.exitFullscreen().catch(function () {});
      else if (ui.box.requestFullscreen) ui.box.requestFullscreen().catch(function () {});
    });
    ui.formats.addEventListener("click", function (e) {
      const button = e.target.closest("button[data-format]");
      if (button && button.getAttribute("data-format") !== api.format) setFormat(button.getAttribute("data-format"));
    });
    ui.rungs.addEventListener("click", function (e) {
      const button = e.target.closest("button[data-rung]");
      if (button) setRung(button.getAttribute("data-rung"));
    });
    ui.box.addEventListener("keydown", function (e) {
      if (e.target.closest("button") && (e.key === " " || e.key === "Enter")) return;
      const keys = {
        " ": function () { ui.play.click(); }, k: function () { ui.play.click(); },
        m: function () { ui.mute.click(); }, f: function () { ui.fullscreen.click(); },
        ArrowLeft: function () { video.currentTime = Math.max(0, video.currentTime - 5); },
        ArrowRight: function () { video.currentTime = Math.min(knownDuration(), video.currentTime + 5); },
        Home: function () { video.currentTime = 0; },
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });

    ["play", "pause", "ended"].forEach(function (type) {
      video.addEventListener(type, function () {
        const playing = !video.paused && !video.ended;
        setIcon(ui.play, playing ? "pause" : "play");
        ui.play.setAttribute("aria-label", playing ? "Pause" : "Play");
      });
    });
    video.addEventListener("volumechange", function () { setIcon(ui.mute, video.muted ? "muted" : "sound"); });
    ["timeupdate", "durationchange", "progress", "seeking", "emptied"].forEach(function (type) {
      video.addEventListener(type, updateProgress);
    });
    video.addEventListener("resize", updateNowPlaying);
    video.addEventListener("playing", hideMessageUnlessError);
    video.addEventListener("error", function () {
      const e = video.error;
      if (!e || !api.format) return;
      recordError(api.format, true, "media", "MEDIA_ERR " + e.code, e.message);
    });

    // The seek bar: hover shows the thumbnail of that time, a click or a drag seeks.
    let dragging = false;
    function fraction(e) {
      const rect = ui.seek.getBoundingClientRect();
      return rect.width ? Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width)) : 0;
    }
    ui.seek.addEventListener("pointermove", function (e) {
      const f = fraction(e);
      showPreview(f);
      if (dragging) showPosition(f * knownDuration());
    });
    ui.seek.addEventListener("pointerleave", function () { if (!dragging) ui.preview.hidden = true; });
    ui.seek.addEventListener("pointerdown", function (e) {
      if (e.button !== 0) return;
      dragging = true;
      ui.seek.setPointerCapture(e.pointerId);
      const f = fraction(e);
      showPreview(f);
      showPosition(f * knownDuration());
    });
    function release(e, commit) {
      if (!dragging) return;
      dragging = false;
      if (commit) video.currentTime = fraction(e) * knownDuration();
      ui.preview.hidden = true;
      updateProgress();
    }
    ui.seek.addEventListener("pointerup", function (e) { release(e, true); });
    ui.seek.addEventListener("pointercancel", function (e) { release(e, false); });
    ui.seek.addEventListener("keydown", function (e) {
      const step = e.key === "ArrowLeft" ? -5 : e.key === "ArrowRight" ? 5 : 0;
      if (!step) return;
      e.preventDefault();
      e.stopPropagation();
      video.currentTime = Math.min(knownDuration(), Math.max(0, video.currentTime + step));
    });
  }

  function hideMessageUnlessError() {
    if (!api.errors.some(function (e) { return e.fatal; })) hideMessage();
  }

  function showPosition(t) {
    const duration = knownDuration();
    const f = duration ? Math.min(1, Math.max(0, t / duration)) : 0;
    ui.played.style.width = (f * 100) + "%";
    ui.handle.style.left = (f * 100) + "%";
    ui.time.textContent = fmtClock(t) + " / " + fmtClock(duration);
    ui.seek.setAttribute("aria-valuenow", String(Math.round(t)));
    ui.seek.setAttribute("aria-valuetext", fmtClock(t));
  }

  function updateProgress() {
    const duration = knownDuration();
    showPosition(video.currentTime);
    ui.seek.setAttribute("aria-valuemax", String(Math.round(duration)));
    let end = 0;
    const b = video.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= video.currentTime + 0.5) end = Math.max(end, b.end(i));
    }
    ui.buffered.style.width = (duration ? Math.min(100, (end / duration) * 100) : 0) + "%";
  }

  function showPreview(f) {
    const t = f * knownDuration();
    const cue = cues.find(function (c) { return t >= c.start && t < c.end; }) || (t > 0 && cues.length && t >= cues[cues.length - 1].start ? cues[cues.length - 1] : null);
    ui.previewTime.textContent = fmtClock(t);
    if (cue) {
      ui.tile.hidden = false;
      ui.tile.style.width = cue.w + "px";
      ui.tile.style.height = cue.h + "px";
      ui.tile.style.backgroundImage = "url(\"" + cue.url.replace(/["\\]/g, "\\$&") + "\")";
      ui.tile.style.backgroundPosition = (-cue.x) + "px " + (-cue.y) + "px";
    } else {
      ui.tile.hidden = true;
    }
    ui.preview.hidden = false;
    const width = ui.seek.clientWidth, half = (cue ? cue.w : 40) / 2 + 4;
    ui.preview.style.left = Math.min(width - half, Math.max(half, f * width)) + "px";
  }

  // WebVTT thumbnail track: cues whose text is `sprite.jpg#xywh=x,y,w,h`, relative to the VTT file.
  function parseVttTime(text) {
    const parts = text.trim().split(":").map(Number);
    return parts.reduce(function (acc, part) { return acc * 60 + part; }, 0);
  }
  function parseThumbnails(text, base) {
    const out = [];
    text.replace(/\r\n?/g, "\n").split(/\n{2,}/).forEach(function (block) {
      const lines = block.split("\n");
      const at = lines.findIndex(function (line) { return line.indexOf("-->") >= 0; });
      if (at < 0) return;
      const times = lines[at].split("-->");
      const start = parseVttTime(times[0]), end = parseVttTime(times[1].trim().split(/\s+/)[0]);
      const payload = lines.slice(at + 1).join("").trim();
      const match = /^(.*?)(?:#xywh=(\d+),(\d+),(\d+),(\d+))?$/.exec(payload);
      if (!payload || !match || !isFinite(start) || !isFinite(end)) return;
      out.push({
        start: start, end: end, url: new URL(match[1], base).href,
        x: Number(match[2] || 0), y: Number(match[3] || 0), w: Number(match[4] || 160), h: Number(match[5] || 90),
      });
    });
    return out.sort(function (a, b) { return a.start - b.start; });
  }
  function loadThumbnails(path) {
    const url = absolute(path);
    fetch(url).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (text) {
      cues = parseThumbnails(text, url);
      api.thumbnails = cues.length;
    }).catch(function (e) {
      api.thumbnails = 0;
      api.errors.push({format: null, fatal: false, type: "thumbnails", details: "load", message: String(e), at: 0});
    });
  }

  const loadedScripts = {};
  function loadScript(format) {
    if (!loadedScripts[format]) {
      loadedScripts[format] = new Promise(function (resolve, reject) {
        if ((format === "hls" && window.Hls) || (format === "dash" && window.dashjs)) { resolve(); return; }
        const script = document.createElement("script");
        script.src = PLAYER_SCRIPTS[format];
        script.onload = function () { versions(); resolve(); };
        script.onerror = function () { delete loadedScripts[format]; reject(new Error("could not load " + PLAYER_SCRIPTS[format])); };
        document.head.appendChild(script);
      });
    }
    return loadedScripts[format];
  }

  function teardown() {
    if (hls) { try { hls.destroy(); } catch (e) { /* already gone */ } hls = null; }
    if (dash) { try { dash.destroy(); } catch (e) { /* already gone */ } dash = null; }
    if (video.hasAttribute("src")) { video.removeAttribute("src"); video.load(); }
    selectedHeight = null;
  }

  function setFormat(format) {
    if (format !== "hls" && format !== "dash") return Promise.reject(new Error("format must be hls or dash"));
    if (!video || !playersInstalled || location.protocol === "file:") return Promise.resolve();
    const mine = ++generation;
    const resume = api.format ? {time: video.currentTime, playing: !video.paused && !video.ended} : {time: 0, playing: false};
    teardown();
    api.format = format;
    api.ready = false;
    markButtons();
    updateNowPlaying();
    return loadScript(format).then(function () {
      if (mine !== generation) return;
      if (format === "hls") startHls(resume, mine);
      else startDash(resume, mine);
    }, function (e) {
      if (mine === generation) recordError(format, true, "setup", "scriptMissing", e.message);
    });
  }

  function rendition(name) {
    return (data.renditions || []).find(function (r) { return r.name === name; }) || null;
  }

  function hlsLevelIndex(name) {
    const r = rendition(name);
    const wanted = "/" + name + "/playlist.m3u8";
    let index = hls.levels.findIndex(function (level) {
      const url = String(Array.isArray(level.url) ? level.url[0] : level.url);
      return url.split("?")[0].endsWith(wanted);
    });
    if (index < 0 && r) {
      index = hls.levels.findIndex(function (level) { return level.width === r.width && level.height === r.height; });
    }
    return index;
  }

  function dashRepresentation(name) {
    const r = rendition(name);
    const all = dash.getRepresentationsByType("video") || [];
    return all.find(function (rep) { return rep.id === name; })
      || (r && all.find(function (rep) { return rep.width === r.width && rep.height === r.height; })) || null;
  }

  function startHls(resume, mine) {
    const Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) {
      recordError("hls", true, "setup", "unsupported", "hls.js cannot play in this browser (no Media Source Extensions)");
      return;
    }
    const player = hls = new Hls({autoStartLoad: false, capLevelToPlayerSize: false, startPosition: resume.time || -1});
    const live = function () { return player === hls && mine === generation; };
    player.on(Hls.Events.ERROR, function (event, e) {
      if (!live()) return;
      recordError("hls", e.fatal, e.type, e.details, (e.error && e.error.message) || e.reason || "");
    });
    player.on(Hls.Events.MANIFEST_PARSED, function () {
      if (!live()) return;
      if (api.rung !== "auto") {
        const index = hlsLevelIndex(api.rung);
        if (index >= 0) { player.startLevel = index; player.loadLevel = index; }  // a manual level: ABR off
      }
      player.startLoad(resume.time || -1);
      api.ready = true;
      if (resume.playing) playVideo();
    });
    player.on(Hls.Events.LEVEL_SWITCHED, function (event, e) {
      if (!live()) return;
      const level = player.levels[e.level];
      selectedHeight = level ? level.height : null;
      updateNowPlaying();
    });
    player.attachMedia(video);
    player.loadSource(absolute(data.player.hls));
  }

  function startDash(resume, mine) {
    const dashjs = window.dashjs;
    const player = dash = dashjs.MediaPlayer().create();
    const live = function () { return player === dash && mine === generation; };
    player.updateSettings({
      debug: {logLevel: dashjs.Debug.LOG_LEVEL_WARNING},
      streaming: {abr: {autoSwitchBitrate: {video: api.rung === "auto"}}},
    });
    const events = dashjs.MediaPlayer.events;
    player.on(events.ERROR, function (e) {
      if (!live()) return;
      const error = e.error || {};
      recordError("dash", true, "error", error.code, error.message);
    });
    player.on(events.PLAYBACK_ERROR, function (e) {
      if (!live()) return;
      recordError("dash", true, "playbackError", e.error && e.error.code, e.error && e.error.message);
    });
    player.on(events.STREAM_INITIALIZED, function () {
      if (!live()) return;
      api.ready = true;
      if (api.rung !== "auto") applyDashRung(api.rung);
    });
    player.on(events.QUALITY_CHANGE_RENDERED, function (e) {
      if (!live() || e.mediaType !== "video") return;
      const rep = e.newRepresentation || {};
      selectedHeight = isNum(rep.height) ? rep.height : null;
      updateNowPlaying();
    });
    player.initialize(video, absolute(data.player.dash), resume.playing, resume.time || 0);
  }

  function applyDashRung(name) {
    dash.updateSettings({streaming: {abr: {autoSwitchBitrate: {video: name === "auto"}}}});
    if (name === "auto") return;
    const rep = dashRepresentation(name);
    if (rep) dash.setRepresentationForTypeById("video", rep.id, true);
  }

  function setRung(name) {
    if (name !== "auto" && !rendition(name)) throw new Error("no rendition " + name);
    api.rung = name;
    markButtons();
    if (!api.ready) return;  // applied when the player has read its manifest
    if (api.format === "hls" && hls) {
      if (name === "auto") hls.nextLevel = -1;  // ABR on again, from the next segment
      else {
        const index = hlsLevelIndex(name);
        if (index >= 0) hls.currentLevel = index;  // switches now: the buffer ahead is replaced
      }
    } else if (api.format === "dash" && dash) {
      applyDashRung(name);
    }
    updateNowPlaying();
  }

  function updateNowPlaying() {
    if (!ui.nowPlaying) return;
    const w = video.videoWidth, ht = video.videoHeight;
    const shown = (data.renditions || []).find(function (r) { return r.width === w && r.height === ht; });
    let text = api.format ? (api.format === "hls" ? "hls.js" : "dash.js") : "";
    if (w && ht) text += " \u00b7 showing " + (shown ? shown.name + " " : "") + w + "\u00d7" + ht;
    if (api.rung === "auto") text += " (auto)";
    ui.nowPlaying.textContent = text;
  }

  function playerState() {
    const q = video && video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    return {
      format: api.format, rung: api.rung, ready: api.ready, message: api.message,
      currentTime: video ? video.currentTime : null,
      duration: video ? video.duration : null,
      paused: video ? video.paused : null,
      ended: video ? video.ended : null,
      readyState: video ? video.readyState : null,
      videoWidth: video ? video.videoWidth : null,
      videoHeight: video ? video.videoHeight : null,
      selectedHeight: selectedHeight,
      frames: q ? {total: q.totalVideoFrames, dropped: q.droppedVideoFrames, corrupted: q.corruptedVideoFrames} : null,
      thumbnails: api.thumbnails,
      errors: api.errors.slice(),
    };
  }

  // ------------------------------------------------------------------ renditions table

  function renderRenditions() {
    const renditions = data.renditions || [];
    if (!renditions.length && !data.audio) return;
    const node = section("renditions-section", "Renditions");
    const quality = function (r, key, digits) {
      return r.quality && isNum(r.quality[key]) ? fmtFixed(r.quality[key], digits) : NONE;
    };
    const head = h("thead", null, [
      h("tr", null, [
        h("th", {rowspan: 2, text: "Rung"}), h("th", {rowspan: 2, text: "Resolution"}), h("th", {rowspan: 2, text: "Codec"}),
        h("th", {colspan: 3, class: "group", text: "Bit rate, kbit/s"}),
        h("th", {rowspan: 2, class: "num", text: "Size"}), h("th", {rowspan: 2, class: "num", text: "Frames"}),
        h("th", {colspan: 6, class: "group", text: "Quality"}),
      ]),
      h("tr", null, [
        h("th", {class: "num", text: "target"}), h("th", {class: "num", text: "measured", title: "average over the rendition"}),
        h("th", {class: "num", text: "peak", title: "the highest segment"}),
        h("th", {class: "num", text: "VMAF target", title: "a fitted ladder's target for the rung"}),
        h("th", {class: "num", text: "VMAF mean"}), h("th", {class: "num", text: "VMAF p5", title: "5th percentile of the frames"}),
        h("th", {class: "num", text: "VMAF worst", title: "the worst chunk's mean"}),
        h("th", {class: "num", text: "PSNR dB"}), h("th", {class: "num", text: "SSIM"}),
      ]),
    ]);
    const body = h("tbody");
    renditions.forEach(function (r) {
      append(body, h("tr", {"data-rendition": r.name, title: r.name + ": " + fmtSeconds(r.duration_s)}, [
        h("th", {scope: "row", text: r.name}),
        h("td", {text: isNum(r.width) && isNum(r.height) ? r.width + "\u00d7" + r.height : NONE}),
        h("td", null, [r.codec || NONE, r.codecs ? h("small", {text: " " + r.codecs}) : null]),
        h("td", {class: "num", text: fmtInt(r.target_bitrate_kbps)}),
        h("td", {class: "num", text: fmtInt(r.measured_bitrate_kbps)}),
        h("td", {class: "num", text: fmtInt(r.peak_bitrate_kbps)}),
        h("td", {class: "num", text: fmtBytes(r.size_bytes)}),
        h("td", {class: "num", text: fmtInt(r.frames)}),
        h("td", {class: "num", text: isNum(r.target_vmaf) ? fmtFixed(r.target_vmaf, 0) : NONE,
          title: r.rate_factor ? "CRF " + r.rate_factor.rung + " (chunks " + r.rate_factor.chunk_min + " to " +
            r.rate_factor.chunk_max + "), capped at " + fmtInt(r.maxrate_kbps) + " kbit/s" : "a fixed ladder's rung"}),
        h("td", {class: "num", text: quality(r, "vmaf_mean", 1)}),
        h("td", {class: "num", text: quality(r, "vmaf_p5", 1)}),
        h("td", {class: "num", text: quality(r, "vmaf_worst_chunk", 1)}),
        h("td", {class: "num", text: quality(r, "psnr_db", 2)}),
        h("td", {class: "num", text: quality(r, "ssim", 4)}),
      ]));
    });
    const a = data.audio;
    if (a) {
      append(body, h("tr", {"data-rendition": "audio", class: "audio-row", title: "audio: " + fmtSeconds(a.duration_s)}, [
        h("th", {scope: "row", text: "audio"}),
        h("td", {text: [isNum(a.channels) ? plural(a.channels, "channel", "channels") : null,
          isNum(a.sample_rate) ? trimZeros((a.sample_rate / 1000).toFixed(1)) + " kHz" : null].filter(Boolean).join(", ") || NONE}),
        h("td", null, [a.codec || NONE, a.codecs ? h("small", {text: " " + a.codecs}) : null]),
        h("td", {class: "num", text: fmtInt(a.bitrate_kbps)}),
        h("td", {class: "num", text: fmtFixed(a.measured_bitrate_kbps, 1)}),
        h("td", {class: "num", text: NONE}),
        h("td", {class: "num", text: fmtBytes(a.size_bytes)}),
        h("td", {class: "num", text: NONE}),
        h("td", {class: "num", colspan: 6, text: ""}),
      ]));
    }
    append(node, h("div", {class: "table-scroll"}, h("table", {id: "renditions", class: "data"}, [head, body])));
    const sampled = renditions.map(function (r) { return r.quality && r.quality.sampling; }).filter(Boolean);
    const measured = renditions.some(function (r) { return r.quality; });
    const scored = renditions.map(function (r) { return r.quality && r.quality.frames_scored; }).filter(isNum);
    append(node, h("p", {class: "footnote", text: measured
      ? "Quality against the source" + (sampled.length ? ": " + Array.from(new Set(sampled)).join("; ") : "") +
        (scored.length ? " (" + plural(Math.min.apply(null, scored), "frame", "frames") + " scored per rung)." : ".")
      : "Quality (VMAF, PSNR, SSIM) was not measured for this job: " + NONE + "."}));
  }

  // ------------------------------------------------------------------ bit rate per segment

  function chartWidth(node, fallback) {
    const width = node.clientWidth;
    return width > 100 ? width : fallback;
  }

  function drawBitrateChart(r, width) {
    const segments = r.segments || [];
    const height = 170, left = 52, right = 10, top = 12, bottom = 30;
    const plotW = width - left - right, plotH = height - top - bottom;
    const end = Math.max(isNum(r.duration_s) ? r.duration_s : 0,
      segments.reduce(function (m, seg) { return Math.max(m, seg.start_s + seg.duration_s); }, 0));
    const peak = segments.reduce(function (m, seg) { return Math.max(m, seg.kbps || 0); }, 0);
    const yTicks = ticks(Math.max(peak, r.target_bitrate_kbps || 0, r.measured_bitrate_kbps || 0) * 1.05, 4);
    const xTicks = ticks(end, Math.max(2, Math.floor(plotW / 55)));
    xTicks.values = xTicks.values.filter(function (v) { return v <= end * (1 + 1e-9); });
    const x = function (t) { return left + (end > 0 ? (t / end) * plotW : 0); };
    const y = function (k) { return top + plotH - (yTicks.max ? (k / yTicks.max) * plotH : 0); };
    const svg = s("svg", {class: "chart bitrate-chart", width: width, height: height, viewBox: "0 0 " + width + " " + height,
      role: "img", "aria-label": r.name + ": bit rate per segment", "data-rung": r.name});
    yTicks.values.forEach(function (v) {
      append(svg, [
        s("line", {class: "grid", x1: left, x2: left + plotW, y1: y(v), y2: y(v)}),
        s("text", {class: "tick", x: left - 6, y: y(v) + 4, "text-anchor": "end", text: fmtTick(v, yTicks.step)}),
      ]);
    });
    xTicks.values.forEach(function (v) {
      append(svg, [
        s("line", {class: "axis-tick", x1: x(v), x2: x(v), y1: top + plotH, y2: top + plotH + 4}),
        s("text", {class: "tick", x: x(v), y: top + plotH + 16, "text-anchor": "middle", text: fmtTick(v, xTicks.step)}),
      ]);
    });
    append(svg, [
      s("line", {class: "axis", x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH}),
      s("text", {class: "axis-label", x: left + plotW, y: height - 2, "text-anchor": "end", text: "seconds"}),
      s("text", {class: "axis-label", x: 12, y: top + plotH / 2, "text-anchor": "middle",
        transform: "rotate(-90 12 " + (top + plotH / 2) + ")", text: "kbit/s"}),
    ]);
    segments.forEach(function (seg, i) {
      const x0 = x(seg.start_s), x1 = x(seg.start_s + seg.duration_s);
      const barW = Math.max(1, x1 - x0 - (x1 - x0 > 4 ? 1 : 0));
      const isPeak = seg.kbps === peak && peak > 0;
      append(svg, s("rect", {class: "segment-bar" + (isPeak ? " peak" : ""), "data-segment": i,
        x: x0, y: y(seg.kbps || 0), width: barW, height: Math.max(0, top + plotH - y(seg.kbps || 0))},
      svgTitle("segment " + (i + 1) + ": " + fmtSeconds(seg.start_s) + " \u2192 " + fmtSeconds(seg.start_s + seg.duration_s)
        + "\n" + fmtInt(seg.kbps) + " kbit/s, " + fmtBytes(seg.bytes) + (isPeak ? "\nthe peak" : ""))));
    });
    const lines = [
      ["average", r.measured_bitrate_kbps, "avg-line"],
      ["target", r.target_bitrate_kbps, "target-line"],
    ];
    lines.forEach(function (line) {
      if (!isNum(line[1])) return;
      append(svg, s("g", {class: line[2]}, [
        s("line", {x1: left, x2: left + plotW, y1: y(line[1]), y2: y(line[1])}, svgTitle(line[0] + " " + fmtInt(line[1]) + " kbit/s")),
      ]));
    });
    return svg;
  }

  function renderBitrates() {
    const renditions = (data.renditions || []).filter(function (r) { return r.segments && r.segments.length; });
    if (!renditions.length) return;
    const node = section("bitrate-section", "Bit rate per segment",
      "Each bar is one segment (x: its time in the video, y: its bit rate). Solid line: the rung's average; dashed: its target.");
    const grid = h("div", {class: "chart-grid"});
    append(node, grid);
    const cards = renditions.map(function (r) {
      const chart = h("div", {class: "chart-box"});
      const card = h("figure", {class: "chart-card"}, [
        h("figcaption", null, [
          h("strong", {text: r.name}),
          " " + (isNum(r.width) ? r.width + "\u00d7" + r.height : ""),
          h("span", {class: "chart-facts", text: "avg " + fmtInt(r.measured_bitrate_kbps) + " \u00b7 peak "
            + fmtInt(r.peak_bitrate_kbps) + " \u00b7 target " + fmtInt(r.target_bitrate_kbps) + " kbit/s \u00b7 "
            + plural(r.segments.length, "segment", "segments")}),
        ]),
        chart,
      ]);
      append(grid, card);
      return {rendition: r, box: chart};
    });
    append(node, h("div", {class: "legend"}, [
      h("span", {class: "key"}, [h("i", {class: "swatch segment"}), "segment"]),
      h("span", {class: "key"}, [h("i", {class: "swatch segment-peak"}), "the highest segment (the peak)"]),
      h("span", {class: "key"}, [h("i", {class: "line avg"}), "average"]),
      h("span", {class: "key"}, [h("i", {class: "line target"}), "target"]),
    ]));
    redrawers.push(function () {
      cards.forEach(function (card) {
        card.box.replaceChildren(drawBitrateChart(card.rendition, chartWidth(card.box, 420)));
      });
    });
  }

  // ------------------------------------------------------------------ timeline

  function barRowKey(bar) { return bar.stage + "|" + (bar.chunk === null || bar.chunk === undefined ? "" : bar.chunk); }
  function stageRank(stage) { const i = STAGES.indexOf(stage); return i < 0 ? STAGES.length : i; }

  function timelineRows(bars) {
    const rows = new Map();
    bars.slice().sort(function (a, b) {
      return stageRank(a.stage) - stageRank(b.stage) || (a.chunk || 0) - (b.chunk || 0) || a.start_s - b.start_s;
    }).forEach(function (bar) {
      const key = barRowKey(bar);
      if (!rows.has(key)) rows.set(key, {label: bar.label || (bar.stage + (bar.chunk !== null && bar.chunk !== undefined ? " " + bar.chunk : "")), bars: []});
      rows.get(key).bars.push(bar);
    });
    return Array.from(rows.values());
  }

  function barDescription(bar) {
    const lines = [
      (bar.label || bar.stage) + (bar.critical ? "  (critical path)" : ""),
      "stage " + bar.stage + (bar.chunk !== null && bar.chunk !== undefined ? ", chunk " + bar.chunk : ""),
      "ran " + fmtSeconds(bar.start_s) + " \u2192 " + fmtSeconds(bar.end_s) + " (" + fmtSeconds(bar.end_s - bar.start_s) + ")",
    ];
    if (bar.wait_s > 0) lines.push("waited " + fmtSeconds(bar.wait_s) + " before that (queue, start-up)");
    if (bar.cold_start === true) lines.push("cold start");
    else if (bar.cold_start === false) lines.push("warm start");
    lines.push("attempt " + (bar.attempt || 1) + (bar.retries ? ", " + plural(bar.retries, "retry", "retries") : ""));
    if (bar.worker) lines.push("worker " + bar.worker);
    return lines.join("\n");
  }

  function peakConcurrency(bars) {
    const events = [];
    bars.forEach(function (b) { events.push([b.start_s, 1], [b.end_s, -1]); });
    events.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
    let now = 0, peak = 0;
    events.forEach(function (e) { now += e[1]; peak = Math.max(peak, now); });
    return peak;
  }

  function drawTimeline(timeline, width, onSelect) {
    const bars = timeline.bars || [];
    const rows = timelineRows(bars);
    const rowH = Math.max(7, Math.min(24, Math.floor(900 / Math.max(1, rows.length))));
    const labelEvery = rowH >= 13 ? 1 : Math.ceil(13 / rowH);
    const labelW = Math.min(170, Math.max(90, width * 0.18));
    const left = labelW + 8, right = 44, top = 8, bottom = 30;
    const plotW = Math.max(100, width - left - right);
    const height = top + rows.length * rowH + bottom;
    const start = Math.min(0, bars.reduce(function (m, b) { return Math.min(m, b.start_s - (b.wait_s || 0)); }, 0));
    const end = Math.max(isNum(timeline.total_s) ? timeline.total_s : 0,
      bars.reduce(function (m, b) { return Math.max(m, b.end_s); }, 0));
    const span = end - start || 1;
    const xTicks = ticks(span, Math.max(2, Math.floor(plotW / 80)));
    xTicks.values = xTicks.values.filter(function (v) { return v <= span * (1 + 1e-9); });
    const x = function (t) { return left + ((t - start) / span) * plotW; };
    const svg = s("svg", {id: "timeline", class: "chart timeline-chart", width: width, height: height,
      viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "job timeline"});
    xTicks.values.forEach(function (v) {
      append(svg, [
        s("line", {class: "grid", x1: x(start + v), x2: x(start + v), y1: top, y2: top + rows.length * rowH}),
        s("text", {class: "tick", x: x(start + v), y: height - 14, "text-anchor": "middle", text: fmtTick(start + v, xTicks.step)}),
      ]);
    });
    append(svg, s("text", {class: "axis-label", x: left + plotW, y: height - 2, "text-anchor": "end",
      text: "seconds since the job started"}));
    if (isNum(timeline.total_s)) {
      append(svg, s("line", {class: "end-line", x1: x(timeline.total_s), x2: x(timeline.total_s), y1: top - 4,
        y2: top + rows.length * rowH}, svgTitle("the job ended: " + fmtSeconds(timeline.total_s))));
    }
    rows.forEach(function (row, i) {
      const y = top + i * rowH;
      if (i % 2) append(svg, s("rect", {class: "row-band", x: 0, y: y, width: width, height: rowH}));
      if (i % labelEvery === 0) {
        append(svg, s("text", {class: "row-label", x: labelW, y: y + rowH / 2 + 4, "text-anchor": "end",
          text: row.label}, svgTitle(row.label)));
      }
      const barY = y + Math.max(1, rowH * 0.15), barH = Math.max(3, rowH * 0.7);
      row.bars.forEach(function (bar) {
        const chunk = bar.chunk === null || bar.chunk === undefined ? "" : String(bar.chunk);
        const group = s("g", {class: "bar stage-" + bar.stage + (bar.critical ? " critical" : ""), tabindex: "0",
          "data-stage": bar.stage, "data-chunk": chunk, "data-critical": bar.critical ? "true" : "false",
          "data-cold-start": bar.cold_start === true ? "true" : bar.cold_start === false ? "false" : null},
        svgTitle(barDescription(bar)));
        if (bar.wait_s > 0) {
          append(group, s("rect", {class: "wait", x: x(bar.start_s - bar.wait_s), y: barY,
            width: Math.max(1, x(bar.start_s) - x(bar.start_s - bar.wait_s)), height: barH}));
        }
        const runW = Math.max(2, x(bar.end_s) - x(bar.start_s));
        append(group, s("rect", {class: "run", x: x(bar.start_s), y: barY, width: runW, height: barH, rx: 1.5}));
        if (bar.cold_start === true) {
          const cx = x(bar.start_s - (bar.wait_s || 0)), size = Math.max(3, Math.min(6, barH / 2));
          append(group, s("path", {class: "cold-mark",
            d: "M" + cx + " " + (barY + barH / 2 - size) + "l" + size + " " + size + "l" + (-size) + " " + size + "l" + (-size) + " " + (-size) + "z"}));
        }
        const attempts = Math.max(bar.attempt || 1, (bar.retries || 0) + 1);
        if (attempts > 1) {
          append(group, s("text", {class: "retry-mark", x: x(bar.end_s) + 4, y: barY + barH / 2 + 4, text: "\u00d7" + attempts}));
        }
        if (runW > 48 && barH >= 12) {
          append(group, s("text", {class: "bar-text", x: x(bar.start_s) + 4, y: barY + barH / 2 + 4,
            text: fmtSeconds(bar.end_s - bar.start_s)}));
        }
        group.addEventListener("click", function () { onSelect(bar); });
        group.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onSelect(bar); } });
        append(svg, group);
      });
    });
    return svg;
  }

  function renderTimeline() {
    const timeline = data.timeline;
    if (!timeline || !timeline.bars || !timeline.bars.length) {
      if (String(data.status) === "FAILED") return;
      const node = section("timeline-section", "Timeline");
      append(node, h("p", {class: "footnote", text: "No timing was recorded for this job."}));
      return;
    }
    const node = section("timeline-section", "Timeline");
    const bars = timeline.bars;
    const encoders = bars.filter(function (b) { return b.stage === "encode"; });
    const cold = bars.filter(function (b) { return b.cold_start === true; }).length;
    const retries = bars.reduce(function (n, b) { return n + (b.retries || 0); }, 0);
    const waits = bars.reduce(function (m, b) { return Math.max(m, b.wait_s || 0); }, 0);
    const facts = [];
    if (encoders.length) {
      facts.push(plural(encoders.length, "chunk encoder", "chunk encoders") + ", at most " + peakConcurrency(encoders) + " at once");
    }
    facts.push(plural(cold, "cold start", "cold starts"), plural(retries, "retry", "retries"));
    if (waits > 0) facts.push("the longest wait before a start " + fmtSeconds(waits));
    append(node, h("p", {class: "intro"}, [
      "Total " + fmtSeconds(timeline.total_s) + ", critical path " + fmtSeconds(timeline.critical_path_s) + ": "
        + facts.join(", ") + ". ",
      "Hover over a bar for its worker, attempt and times; click it to see them below (to copy).",
    ]));
    const box = h("div", {class: "chart-box timeline-box"});
    const detail = h("pre", {id: "timeline-detail", class: "detail", text: "Click a bar to see its details here."});
    const has = function (test) { return bars.some(test); };
    const stageNames = {split: "split", analyse: "ladder analysis (a row per analysed chunk)", fit: "ladder fit",
      encode: "encode (a row per chunk)", audio: "audio", merge: "merge"};
    const keys = Object.keys(stageNames).filter(function (stage) { return has(function (b) { return b.stage === stage; }); })
      .map(function (stage) { return h("span", {class: "key"}, [h("i", {class: "swatch stage-" + stage}), stageNames[stage]]); });
    if (has(function (b) { return b.wait_s > 0; })) {
      keys.push(h("span", {class: "key"}, [h("i", {class: "swatch wait"}), "waiting before the start (queue, cold start init)"]));
    }
    if (has(function (b) { return b.critical; })) {
      keys.push(h("span", {class: "key"}, [h("i", {class: "swatch critical"}), "on the critical path"]));
    }
    if (cold) keys.push(h("span", {class: "key"}, [h("i", {class: "cold"}), "cold start"]));
    if (has(function (b) { return (b.attempt || 1) > 1 || b.retries > 0; })) {
      keys.push(h("span", {class: "key"}, [h("b", {text: "\u00d7N"}), "N attempts (retried)"]));
    }
    append(node, [box, h("div", {class: "legend"}, keys), detail]);
    redrawers.push(function () {
      box.replaceChildren(drawTimeline(timeline, chartWidth(box, 900), function (bar) {
        detail.textContent = barDescription(bar);
      }));
    });
  }

  // ------------------------------------------------------------------ cost

  function renderCost() {
    const cost = data.cost;
    if (!cost) {
      if (String(data.status) === "FAILED") return;
      const node = section("cost-section", "Cost");
      append(node, h("p", {class: "footnote", text: "No cost was worked out for this job."}));
      return;
    }
    const node = section("cost-section", "Cost");
    const where = cost.where || data.where;
    const priced = (cost.region ? cost.region : "") + (cost.price_date ? " prices of " + cost.price_date : "");
    const mediaconvert = isNum(cost.mediaconvert_usd)
      ? h("p", {class: "compare"}, [
        "AWS Elemental MediaConvert (on-demand) for the same ladder: ",
        h("strong", {id: "cost-mediaconvert", text: fmtMoney(cost.mediaconvert_usd)}),
        cost.mediaconvert_basis ? h("span", {class: "basis", text: " \u2014 " + cost.mediaconvert_basis}) : null,
        isNum(cost.total_usd) && cost.total_usd > 0 && cost.mediaconvert_usd > 0
          ? h("span", {class: "ratio", text: " (" + ratioText(cost.total_usd, cost.mediaconvert_usd) + ")"}) : null,
      ]) : null;
    if (where === "local") {
      append(node, [
        h("p", {class: "headline"}, [
          h("span", {id: "cost-cpu-s", class: "big", text: isNum(cost.cpu_s) ? fmtFixed(cost.cpu_s, 1) : NONE}),
          " CPU-seconds on this machine (splitter, encoders and merger together)",
        ]),
        h("p", {class: "headline-2"}, [
          "On AWS Lambda" + (priced ? " (" + priced + ")" : "") + " the same job would cost about ",
          h("strong", {id: "cost-total", text: fmtMoney(cost.total_usd)}),
        ]),
        mediaconvert,
      ]);
    } else {
      append(node, [
        h("p", {class: "headline"}, [
          h("strong", {id: "cost-total", class: "big", text: fmtMoney(cost.total_usd)}),
          " on AWS" + (priced ? " (" + priced + ")" : ""),
        ]),
        mediaconvert,
      ]);
    }
    const lines = cost.lines || [];
    if (lines.length) {
      const body = h("tbody");
      lines.forEach(function (line) {
        append(body, h("tr", null, [
          h("td", {text: line.item}),
          h("td", {class: "num", text: fmtQuantity(line.quantity)}),
          h("td", {text: line.unit || ""}),
          h("td", {class: "num", text: fmtPrice(line.unit_price)}),
          h("td", {class: "num", text: fmtMoney(line.usd)}),
        ]));
      });
      append(node, h("div", {class: "table-scroll"}, h("table", {id: "cost-lines", class: "data"}, [
        h("thead", null, h("tr", null, [
          h("th", {text: "Item"}), h("th", {class: "num", text: "Quantity"}), h("th", {text: "Unit"}),
          h("th", {class: "num", text: "Unit price"}), h("th", {class: "num", text: (cost.currency || "USD")}),
        ])),
        body,
        h("tfoot", null, h("tr", null, [
          h("th", {colspan: 4, text: where === "local" ? "Total, if it had run on AWS" : "Total"}),
          h("td", {class: "num", text: fmtMoney(cost.total_usd)}),
        ])),
      ])));
    }
    const facts = [];
    if (cost.price_date) facts.push("Price table of " + cost.price_date);
    if (cost.region) facts.push("region " + cost.region);
    append(node, h("p", {class: "footnote"}, [facts.join(", ") + (facts.length ? ". " : ""), cost.note || ""]));
  }

  function ratioText(ours, theirs) {
    const r = theirs / ours;
    if (r >= 1) return "the pipeline costs " + trimZeros(r.toFixed(r >= 10 ? 0 : 1)) + "\u00d7 less";
    return "the pipeline costs " + trimZeros((1 / r).toFixed(1 / r >= 10 ? 0 : 1)) + "\u00d7 more";
  }

  // ------------------------------------------------------------------ footer, layout

  function renderFooter() {
    const footer = $("footer");
    const download = h("a", {href: "#", id: "download-data", text: "the report data (JSON)"});
    download.addEventListener("click", function (e) {
      e.preventDefault();
      const blob = new Blob([JSON.stringify(data, null, 1)], {type: "application/json"});
      const link = h("a", {href: URL.createObjectURL(blob), download: (data.job_id || "report") + ".report.json"});
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
    });
    append(footer, ["vtp job report \u00b7 ", download, h("span", {id: "player-versions"})]);
  }

  const redrawers = [];
  let drawnWidth = -1;
  function redraw() {
    const width = document.documentElement.clientWidth;
    if (width === drawnWidth) return;
    drawnWidth = width;
    redrawers.forEach(function (draw) { draw(); });
  }
  let resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(redraw, 120);
  });

  function versions() {
    const parts = [];
    if (window.Hls && window.Hls.version) parts.push("hls.js " + window.Hls.version);
    if (window.dashjs && window.dashjs.Version) parts.push("dash.js " + window.dashjs.Version);
    const node = $("player-versions");
    if (node) node.textContent = parts.length ? " \u00b7 players: " + parts.join(", ") : "";
  }

  function run(step) {
    try { step(); } catch (e) {
      // One broken section must not hide the others: say so where the page ends.
      api.errors.push({format: null, fatal: true, type: "page", details: step.name, message: String(e), at: 0});
      append($("footer"), h("p", {class: "page-error", text: "Part of this page could not be drawn (" + step.name + "): " + e}));
      throw e;
    }
  }

  [renderSummary, renderFailure, renderRenditions, renderBitrates, renderTimeline, renderCost, renderFooter, renderPlayer]
    .forEach(function (step) { try { run(step); } catch (e) { setTimeout(function () { throw e; }); } });
  redraw();
})();
