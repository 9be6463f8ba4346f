/* Phone notifications (Web Push) on the worker's page: #push-enable subscribes this browser at its push service
   with the server's VAPID key (GET /api/v1/push/key), registers /sw.js to show the notifications, and stores the
   subscription (POST /api/v1/push/subscriptions, the session cookie). #push-msg says how it went, in the
   page's language (its data-* attributes). */
(function () {
    "use strict";

    function bytes(b64url) {
        var s = b64url.replace(/-/g, "+").replace(/_/g, "/");
        while (s.length % 4) { s += "="; }
        var raw = atob(s), out = new Uint8Array(raw.length);
        for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
        return out;
    }

    function say(state) {
        var el = document.getElementById("push-msg");
        if (el) { el.textContent = el.getAttribute("data-" + state) || state; el.setAttribute("data-state", state); }
    }

    function enable() {
        if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
            say("unsupported");
            return Promise.resolve();
        }
        var reg;
        return Notification.requestPermission().then(function (perm) {
            if (perm !== "granted") { say("denied"); return null; }
            return navigator.serviceWorker.register("/sw.js", {scope: "/"}).then(function (r) {
                reg = r;
                return navigator.serviceWorker.ready;
            }).then(function () {
                return fetch("/api/v1/push/key", {credentials: "same-origin"});
            }).then(function (resp) {
                if (!resp.ok) { throw new Error("key " + resp.status); }
                return resp.json();
            }).then(function (key) {
                return reg.pushManager.getSubscription().then(function (sub) {
                    return sub || reg.pushManager.subscribe({userVisibleOnly: true,
                                                             applicationServerKey: bytes(key.public_key)});
                });
            }).then(function (sub) {
                return fetch("/api/v1/push/subscriptions", {
                    method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(sub.toJSON())
                });
            }).then(function (resp) { say(resp.ok ? "on" : "failed"); });
        }).catch(function () { say("failed"); });
    }

    document.addEventListener("click", function (e) {
        var target = e.target && e.target.closest ? e.target.closest("#push-enable") : null;
        if (target) { say("working"); enable(); }
    });
})();
