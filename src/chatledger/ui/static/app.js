/* chatledger ui: the little behaviour the pages need, with no inline script (strict CSP).
 *
 * - Draws each chart from the JSON its element carries (uPlot).
 * - Leaves empty fields out of the URL htmx builds from a filter form.
 * - Asks before a form marked data-confirm is sent.
 * - Applies a filter form (data-auto-submit) as soon as a list or radio choice changes.
 * - Pauses the live view's polling, and says how many calls arrived.
 * - Picks the custom range on the overview when a start or end is typed.
 */
(function () {
  "use strict";

  var COLORS = ["#1f5fa8", "#b3401b", "#2e7d32", "#6a3d9a"];

  function unitFormat(unit, value) {
    if (value === null || value === undefined) return "";
    if (unit === "USD") return "$" + (value < 1 ? value.toFixed(4) : value.toFixed(2));
    if (unit === "%") return value.toFixed(0) + "%";
    if (unit === "ms") return value >= 1000 ? (value / 1000).toFixed(1) + " s" : Math.round(value) + " ms";
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
    return String(Math.round(value * 100) / 100);
  }

  function drawChart(element) {
    if (element.dataset.drawn || typeof uPlot === "undefined") return;
    var data = JSON.parse(element.dataset.series);
    var width = Math.max(280, element.clientWidth || 480);
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (line, index) {
      series.push({
        label: line.label,
        stroke: COLORS[index % COLORS.length],
        width: 2,
        points: { show: data.x.length < 60 },
        spanGaps: false,
      });
      columns.push(line.values);
    });
    var options = {
      width: width,
      height: 200,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      series: series,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max || 0, 1) * 1.1]; } } },
      axes: [
        { stroke: "#444" },
        { stroke: "#444", size: 60, values: function (u, values) { return values.map(function (v) { return unitFormat(data.unit, v); }); } },
      ],
    };
    element.dataset.drawn = "1";
    var chart = new uPlot(options, columns, element);
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(function () {
        var next = Math.max(280, element.clientWidth);
        if (Math.abs(next - chart.width) > 4) chart.setSize({ width: next, height: 200 });
      }).observe(element);
    }
  }

  function drawCharts(root) {
    var found = Array.prototype.slice.call((root || document).querySelectorAll("[data-series]"));
    if (root && root.matches && root.matches("[data-series]")) found.push(root);
    found.forEach(drawChart);
  }

  function setUp() {
    drawCharts(document);

    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    }, true);

    // A filter form applies a choice from a list or a radio button at once; text waits for
    // Enter or the button (applying on every change would also send a second request).
    document.addEventListener("change", function (event) {
      var field = event.target;
      var form = field.form;
      if (!form || !form.hasAttribute("data-auto-submit")) return;
      if (field.tagName === "SELECT" || field.type === "radio") form.requestSubmit();
    });

    // Typing a start or end on the overview means a custom range: choose it.
    var custom = document.querySelector("input[name='range'][value='custom']");
    if (custom) {
      ["f-since", "f-until"].forEach(function (id) {
        var input = document.getElementById(id);
        if (input) input.addEventListener("input", function () { custom.checked = true; });
      });
    }

    if (typeof htmx === "undefined") return;

    document.body.addEventListener("htmx:load", function (event) { drawCharts(event.detail.elt); });

    // A filter form's empty fields are no condition: keep them out of the URL.
    document.body.addEventListener("htmx:configRequest", function (event) {
      var parameters = event.detail.parameters;
      var empty = [];
      if (typeof parameters.forEach === "function") {
        parameters.forEach(function (value, name) { if (value === "") empty.push(name); });
        empty.forEach(function (name) { parameters.delete(name); });
      } else {
        Object.keys(parameters).forEach(function (name) { if (parameters[name] === "") delete parameters[name]; });
      }
    });

    var pause = document.querySelector("[data-live-pause]");
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      if (pause && pause.checked && event.detail.elt.hasAttribute("data-live-feed")) event.preventDefault();
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var status = document.getElementById("live-status");
      var feed = document.getElementById("live-feed");
      var count = feed ? feed.querySelector("[data-live-count]") : null;
      if (!status || !count) return;
      var added = parseInt(count.dataset.liveCount, 10) || 0;
      var now = new Date().toISOString().slice(11, 19);
      status.textContent = added ? added + (added === 1 ? " new call" : " new calls") + " at " + now + " UTC" : "Updated at " + now + " UTC";
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
})();
