/* gridtwin live updates in the browser (see viz/live.py).
 *
 * Opens GET /api/v1/stream (Server-Sent Events; the HttpOnly session cookie authenticates it) and, on each
 * alarm or ticket event, bumps the frame's `version` store (a click on the hidden #live-bump), so the scene
 * and the alarm list refresh at once (bumps are coalesced: one refresh at a time, see bump()). `hello` (the first
 * one once the page has loaded, a reconnect at once) and `resync` refetch the same way. The Dash poll stays as a slow fallback (session expiry,
 * resync); while the stream is down it is made fast again so the page keeps working without push.
 * The stream is reopened with exponential backoff and jitter.
 *
 * #live-status in the top bar shows when the last event or heartbeat came (community time) and turns red
 * when nothing came for 3 heartbeat periods. New critical alarms may beep (WebAudio) and raise a browser
 * notification: the #alert-sound / #alert-notify toggles, remembered in localStorage, default off.
 * window.gridtwinLive exposes counters for tests and the benchmark.
 */
(function () {
    "use strict";
    var STREAM = "/api/v1/stream";
    var BUMP_GAP_MS = 100;
    var BUSY_MAX_MS = 800;  // a callback that stays pending (a slow page, a lost answer) must not hold pushes back
    var RETRY_MIN_MS = 1000;
    var RETRY_MAX_MS = 30000;
    var KEYS = {"alert-sound": "gridtwin.alert.sound", "alert-notify": "gridtwin.alert.notify"};
    var live = window.gridtwinLive = {
        events: 0, bumps: 0, alerts: 0, beeps: 0, notified: 0, opened: 0, lastAt: 0, connected: false,
        brokerUp: true, stallMs: 45000, pollMs: null, stalled: false, es: null
    };
    var retryMs = RETRY_MIN_MS, retryTimer = null, bumpTimer = null, lastBump = 0, bumpDeadline = 0, audio = null;

    function setProps(id, props) {
        var dc = window.dash_clientside;
        if (!dc || !dc.set_props) { return false; }
        try { dc.set_props(id, props); return true; } catch (e) { return false; }
    }

    function busy() {  // Dash is still running callbacks (the last refresh, or the first render)
        var stores = window.dash_stores || [];
        for (var i = 0; i < stores.length; i++) {
            try { if (stores[i].getState().isLoading) { return true; } } catch (e) { /* not ready */ }
        }
        return false;
    }

    function bump(patienceMs) {
        // Coalesce: one refresh at a time. A bump while the last one's callbacks run would make Dash drop
        // their answers, and a steady stream of events would then starve the scene; this bump waits until
        // they are done (at most patienceMs, BUSY_MAX_MS by default) and then fetches every change that came
        // meanwhile.
        var deadline = Date.now() + (patienceMs || BUSY_MAX_MS);
        if (bumpDeadline === 0 || deadline < bumpDeadline) { bumpDeadline = deadline; }
        if (bumpTimer !== null) { return; }
        bumpTimer = setTimeout(fire, Math.max(0, lastBump + BUMP_GAP_MS - Date.now()));
    }

    function fire() {
        bumpTimer = null;
        if (busy() && Date.now() < bumpDeadline) { bumpTimer = setTimeout(fire, 40); return; }
        bumpDeadline = 0;
        lastBump = Date.now();
        live.bumps += 1;
        var button = document.getElementById("live-bump");  // its callback moves the `version` store
        if (button) { button.click(); }
    }

    function setPoll() {
        var el = document.getElementById("live-status");
        if (!el) { return; }
        var ms = parseInt(live.connected && !live.stalled ? el.dataset.slowPollMs : el.dataset.fastPollMs, 10);
        if (ms > 0 && ms !== live.pollMs && setProps("poll", {interval: ms})) { live.pollMs = ms; }
    }

    function parse(e) {
        try { return JSON.parse(e.data); } catch (err) { return {}; }
    }

    function seen(e) {
        live.events += 1;
        live.lastAt = Date.now();
        if (live.stalled) { live.stalled = false; }
        render();
    }

    function signedOut() {
        return location.pathname.indexOf("/login") === 0;
    }

    function connect() {
        retryTimer = null;
        if (live.es !== null) { return; }
        if (signedOut()) { retryTimer = setTimeout(connect, 1000); return; }
        var es = new EventSource(STREAM);
        live.es = es;
        es.addEventListener("hello", function (e) {
            var d = parse(e);
            if (d.keepalive_s > 0) { live.stallMs = Math.max(3000, 3000 * d.keepalive_s); }
            live.connected = true;
            live.brokerUp = d.connected !== false;
            retryMs = RETRY_MIN_MS;
            seen(e);
            setPoll();
            // what changed between the page's first data and now (or while the stream was away) came by no event:
            // refetch once the page's own first callbacks are done
            bump(live.opened++ > 0 ? BUSY_MAX_MS : 15000);
        });
        es.addEventListener("alarm", function (e) { seen(e); live.alarmAt = Date.now(); alarm(parse(e)); bump(); });
        es.addEventListener("ticket", function (e) { seen(e); bump(); });
        es.addEventListener("heartbeat", function (e) { live.brokerUp = parse(e).connected !== false; seen(e); });
        es.addEventListener("status", function (e) { live.brokerUp = parse(e).connected !== false; seen(e); });
        es.addEventListener("resync", function (e) { live.brokerUp = parse(e).connected !== false; seen(e); bump(); });
        es.onerror = function () {
            es.close();
            if (live.es === es) { live.es = null; }
            live.connected = false;
            setPoll();
            if (retryTimer === null) {
                retryTimer = setTimeout(connect, retryMs * (0.5 + Math.random() / 2));
                retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
            }
        };
    }

    // -- the indicator -------------------------------------------------------------------------------------

    function clock(el, at) {
        var offset = parseInt(el.dataset.offsetMin || "0", 10);
        var d = new Date(at + offset * 60000);
        function two(n) { return (n < 10 ? "0" : "") + n; }
        return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" + two(d.getUTCSeconds());
    }

    function render() {
        var el = document.getElementById("live-status");
        if (!el) { return; }
        var now = Date.now(), text, cls;
        var stalled = live.lastAt > 0 ? now - live.lastAt > live.stallMs : !live.connected && live.opened > 0;
        if (stalled !== live.stalled) { live.stalled = stalled; setPoll(); }
        if (live.lastAt === 0) {
            text = live.opened > 0 || (live.es === null && retryMs > RETRY_MIN_MS) ? el.dataset.never
                : el.dataset.connecting;
            cls = retryMs > RETRY_MIN_MS ? "live-status stalled" : "live-status";
        } else if (stalled) {
            text = el.dataset.stalled; cls = "live-status stalled";
        } else if (!live.brokerUp) {
            text = el.dataset.brokerDown; cls = "live-status warn";
        } else {
            text = el.dataset.updated; cls = "live-status ok";
        }
        text = (text || "").replace("{time}", live.lastAt ? clock(el, live.lastAt) : "--:--:--");
        if (el.textContent !== text) { el.textContent = text; }
        if (el.className !== cls) { el.className = cls; }
        if (pollWanted()) { setPoll(); }
        syncToggles();
    }

    function pollWanted() {
        var el = document.getElementById("live-status");
        if (!el) { return false; }
        var ms = parseInt(live.connected && !live.stalled ? el.dataset.slowPollMs : el.dataset.fastPollMs, 10);
        return ms !== live.pollMs;
    }

    // -- alerts on new critical alarms ---------------------------------------------------------------------

    function enabled(id) {
        try { return window.localStorage.getItem(KEYS[id]) === "1"; } catch (e) { return false; }
    }

    function syncToggles() {
        Object.keys(KEYS).forEach(function (id) {
            var button = document.getElementById(id);
            var on = enabled(id) ? "true" : "false";
            if (button && button.getAttribute("aria-pressed") !== on) { button.setAttribute("aria-pressed", on); }
        });
    }

    document.addEventListener("click", function (e) {
        var button = e.target && e.target.closest ? e.target.closest("#alert-sound, #alert-notify") : null;
        if (!button) { return; }
        var on = !enabled(button.id);
        try { window.localStorage.setItem(KEYS[button.id], on ? "1" : "0"); } catch (err) { /* private mode */ }
        syncToggles();
        note("");
        if (button.id === "alert-sound" && on) { beep(); }  // a user gesture: the audio context may start
        if (button.id === "alert-notify" && on) {
            if (!("Notification" in window)) { note("denied"); return; }
            Notification.requestPermission().then(function (p) { note(p === "granted" ? "" : "denied"); });
        }
    });

    function note(which) {
        var el = document.getElementById("alert-note");
        var box = el && el.parentElement;
        if (el) { el.textContent = which && box ? box.dataset[which] || "" : ""; }
    }

    function alarm(d) {
        if (!d || d.severity !== "critical" || (d.kind !== "raised" && d.kind !== "escalated")) { return; }
        live.alerts += 1;
        if (enabled("alert-sound")) { beep(); }
        if (enabled("alert-notify")) { notify(); }
    }

    function beep() {
        try {
            var Ctx = window.AudioContext || window.webkitAudioContext;
            if (!Ctx) { return; }
            audio = audio || new Ctx();
            if (audio.state === "suspended") { audio.resume(); }
            var t = audio.currentTime;
            [0, 0.25].forEach(function (start) {  // two short 880 Hz beeps
                var osc = audio.createOscillator(), gain = audio.createGain();
                osc.type = "square";
                osc.frequency.value = 880;
                gain.gain.setValueAtTime(0.0001, t + start);
                gain.gain.exponentialRampToValueAtTime(0.2, t + start + 0.02);
                gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.18);
                osc.connect(gain).connect(audio.destination);
                osc.start(t + start);
                osc.stop(t + start + 0.2);
            });
            live.beeps += 1;
        } catch (e) { /* no audio: the flashing row still shows it */ }
    }

    var pending = 0, notifyTimer = null;

    function notify() {
        if (!("Notification" in window) || Notification.permission !== "granted") {
            if ("Notification" in window && Notification.permission === "denied") { note("denied"); }
            return;
        }
        pending += 1;
        if (notifyTimer !== null) { return; }
        notifyTimer = setTimeout(function () {  // a burst of alarms: one notification
            notifyTimer = null;
            var box = document.querySelector(".alert-toggles");
            var n = pending;
            pending = 0;
            if (!box) { return; }
            try {
                var shown = new Notification(box.dataset.title || "gridtwin", {
                    body: (box.dataset.body || "{n}").replace("{n}", String(n)), tag: "gridtwin-critical"
                });
                shown.onclick = function () { window.focus(); shown.close(); };
                live.notified += 1;
            } catch (e) { /* some browsers allow notifications only from a service worker */ }
        }, 300);
    }

    setInterval(render, 1000);
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", connect);
    } else {
        connect();
    }
}());
