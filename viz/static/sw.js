/* gridtwin's service worker (served at /sw.js, scope /): shows the Web Push notifications the server sends for
   tickets (gateway/notify/push.py) and opens the ticket's page on a tap. It caches nothing: every page is live
   data. */
"use strict";

self.addEventListener("push", function (event) {
    var data = {};
    try {
        data = event.data ? event.data.json() : {};
    } catch (e) {
        data = {title: "gridtwin", body: event.data ? event.data.text() : ""};
    }
    event.waitUntil(self.registration.showNotification(data.title || "gridtwin", {
        body: data.body || "",
        tag: data.tag || undefined,
        renotify: !!data.tag,
        requireInteraction: true,
        data: {url: data.url || "/worker"}
    }));
});

self.addEventListener("notificationclick", function (event) {
    event.notification.close();
    var url = (event.notification.data && event.notification.data.url) || "/worker";
    if (url.charAt(0) !== "/" || url.charAt(1) === "/") { url = "/worker"; }  // pages of this site only
    event.waitUntil(self.clients.matchAll({type: "window", includeUncontrolled: true}).then(function (list) {
        for (var i = 0; i < list.length; i++) {
            if ("navigate" in list[i] && "focus" in list[i]) {
                return list[i].navigate(url).then(function (c) { return c ? c.focus() : self.clients.openWindow(url); });
            }
        }
        return self.clients.openWindow(url);
    }));
});
