// The instance page's usage charts (uPlot, vendored): memory rss / cache / limit, CPU in
// cores, network rx / tx and disk read / write in bytes a second, from /instances/NAME/stats
// (the stored samples, bucketed by the server), refreshed every 5 s. Each chart's data-points
// says how many points it shows (read by the tests).
(function () {
  "use strict";
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function bytes(v) {
    if (v == null) { return "-"; }
    var i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + UNITS[i];
  }
  function cores(v) { return v == null ? "-" : v.toFixed(2); }
  function rate(v) { return v == null ? "-" : bytes(v) + "/s"; }
  function pair(a, b, colours) {  // two rates of one chart: network rx/tx, disk read/write
    return {
      columns: function (d) { return [d.time, d[a], d[b]]; },
      series: [{}, {label: a, stroke: colours[0], width: 2, value: function (u, v) { return rate(v); }},
               {label: b, stroke: colours[1], width: 2, value: function (u, v) { return rate(v); }}],
      axis: function (u, vals) { return vals.map(rate); },
      size: 90
    };
  }
  var KINDS = {
    memory: {
      columns: function (d) { return [d.time, d.rss, d.cache, d.limit]; },
      series: [{}, {label: "rss", stroke: "#1f5fbf", width: 2, value: function (u, v) { return bytes(v); }},
               {label: "cache", stroke: "#1b7f3b", width: 2, value: function (u, v) { return bytes(v); }},
               {label: "limit", stroke: "#b3261e", dash: [6, 4], value: function (u, v) { return bytes(v); }}],
      axis: function (u, vals) { return vals.map(bytes); }
    },
    cpu: {
      columns: function (d) { return [d.time, d.cpu]; },
      series: [{}, {label: "cores", stroke: "#9a6700", width: 2, value: function (u, v) { return cores(v); }}],
      axis: function (u, vals) { return vals.map(cores); }
    },
    net: pair("rx", "tx", ["#1f5fbf", "#b3261e"]),
    disk: pair("read", "write", ["#1b7f3b", "#9a6700"])
  };
  function draw(el, data) {
    var kind = KINDS[el.dataset.kind];
    var cols = kind.columns(data);
    if (el.plot) {
      el.plot.setData(cols);
    } else {
      el.plot = new uPlot({width: el.clientWidth || 600, height: 220, series: kind.series,
                           axes: [{}, {values: kind.axis, size: kind.size || 70}]}, cols, el);
    }
    el.dataset.points = String(data.time.length);
  }
  function load(src, els) {  // one request feeds every chart of the same data
    fetch(src, {credentials: "same-origin", headers: {accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (d) { els.forEach(function (el) { draw(el, d); el.removeAttribute("data-error"); }); })
      .catch(function (e) { els.forEach(function (el) { el.dataset.error = String(e); }); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var charts = Array.prototype.slice.call(document.querySelectorAll(".chart[data-src]"));
    var bySrc = {};
    charts.forEach(function (el) { (bySrc[el.dataset.src] = bySrc[el.dataset.src] || []).push(el); });
    function loadAll() { Object.keys(bySrc).forEach(function (src) { load(src, bySrc[src]); }); }
    loadAll();
    setInterval(loadAll, 5000);
    window.addEventListener("resize", function () {
      charts.forEach(function (el) { if (el.plot) { el.plot.setSize({width: el.clientWidth, height: 220}); } });
    });
  });
})();
