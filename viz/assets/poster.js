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
