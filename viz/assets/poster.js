/* The 3D scene's first frame (an <img> the server drew from the same figure, viz/poster.py) lies under the
   transparent graph. Once WebGL has drawn the meshes, the frame is hidden, so that a later redraw (another
   view, a filter) never shows a stale picture through the graph. */
(function () {
  "use strict";
  function drawn(gd) {
    return !!(gd && gd._fullLayout && (gd.data || []).some(function (t) { return t.type === "mesh3d"; })
              && gd.querySelector(".gl-container canvas"));
  }
  function check() {
    var wrap = document.querySelector(".scene-wrap");
    if (!wrap || wrap.classList.contains("drawn") || wrap.dataset.posterWait) { return; }
    var gd = wrap.querySelector("#scene .js-plotly-plot");
    if (!drawn(gd)) { return; }
    wrap.dataset.posterWait = "1";  // the meshes are in: WebGL draws them in the next animation frame
    requestAnimationFrame(function () {
      requestAnimationFrame(function () { wrap.classList.add("drawn"); });
    });
  }
  setInterval(check, 50);
})();

/* The scene's WebGL drawing buffer at the screen's pixel density (1 or 2), where Plotly's default is always 2:
   four times the pixels to shade on a screen of density 1, which software WebGL pays for on every redraw. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  gridtwin_scene: {
    pixel_ratio: function (_id, config) {
      var ratio = Math.min(Math.max(Math.round(window.devicePixelRatio || 1), 1), 2);
      return Object.assign({}, config || {}, {plotGlPixelRatio: ratio});
    }
  }
});
