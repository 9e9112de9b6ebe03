/* Small hand-written SVG charts for the admin dashboard: no library, no CDN.
 *
 *   OpsCharts.groupedBars(container, {labels: [...], series: [{name, values: [...], cls}]})
 *   OpsCharts.limitBars(container, [{label, value, limit, cls}])
 *
 * Every bar is a <rect> carrying data-series, data-label and data-value, so the numbers can be read
 * back (and tested) from the drawing itself.
 */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= value) return steps[i] * power;
    }
    return 10 * power;
  }

  function formatNumber(value) {
    if (Math.abs(value) >= 1000) return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + "k";
    return String(Math.round(value * 100) / 100);
  }

  function replace(container, svg, emptyText, empty) {
    container.textContent = "";
    if (empty) {
      var p = document.createElement("p");
      p.className = "ops-muted";
      p.textContent = emptyText;
      container.appendChild(p);
    }
    container.appendChild(svg);
  }

  function legend(svg, series, x, y) {
    series.forEach(function (s, i) {
      var g = el("g", {"class": "ops-legend", transform: "translate(" + (x + i * 110) + "," + y + ")"});
      g.appendChild(el("rect", {width: 10, height: 10, "class": "ops-swatch " + (s.cls || "")}));
      g.appendChild(el("text", {x: 14, y: 9}, s.name));
      svg.appendChild(g);
    });
  }

  /* Vertical bars, one group per label (e.g. a day), one bar per series (messages, calls). */
  function groupedBars(container, data) {
    var labels = data.labels || [];
    var series = data.series || [];
    var width = 640, height = 240, left = 40, right = 10, top = 24, bottom = 36;
    var plotW = width - left - right, plotH = height - top - bottom;
    var max = 0;
    series.forEach(function (s) { (s.values || []).forEach(function (v) { max = Math.max(max, Number(v) || 0); }); });
    var yMax = niceMax(max);
    var svg = el("svg", {viewBox: "0 0 " + width + " " + height, "class": "ops-svg", "data-chart": data.name || "bars",
                         preserveAspectRatio: "xMidYMid meet"});
    svg.appendChild(el("title", {}, data.title || ""));
    for (var t = 0; t <= 4; t++) {
      var y = top + plotH - (plotH * t) / 4;
      svg.appendChild(el("line", {x1: left, x2: width - right, y1: y, y2: y, "class": "ops-grid-line"}));
      svg.appendChild(el("text", {x: left - 6, y: y + 4, "text-anchor": "end", "class": "ops-axis"}, formatNumber((yMax * t) / 4)));
    }
    var groupW = labels.length ? plotW / labels.length : plotW;
    var barW = Math.max(2, (groupW * 0.8) / Math.max(1, series.length));
    labels.forEach(function (label, i) {
      var gx = left + i * groupW + groupW * 0.1;
      series.forEach(function (s, j) {
        var value = Number((s.values || [])[i]) || 0;
        var h = (plotH * value) / yMax;
        var rect = el("rect", {
          x: gx + j * barW, y: top + plotH - h, width: barW - 1, height: Math.max(h, 0),
          "class": "ops-bar " + (s.cls || ""), "data-series": s.name, "data-label": label, "data-value": value
        });
        rect.appendChild(el("title", {}, s.name + " " + label + ": " + value));
        svg.appendChild(rect);
      });
      // Label every other day when they crowd.
      if (labels.length <= 10 || i % 2 === 0) {
        svg.appendChild(el("text", {x: gx + (groupW * 0.8) / 2, y: height - bottom + 14, "text-anchor": "middle", "class": "ops-axis"},
                           String(label).slice(5)));
      }
    });
    legend(svg, series, left, 8);
    replace(container, svg, "No traffic yet.", max === 0);
  }

  /* Horizontal bars: spend (value) against a cap (limit). Over 80 % of the cap is a warning, at the cap an error. */
  function limitBars(container, rows) {
    var rowH = 26, left = 200, right = 90, width = 640, top = 8;
    var height = top * 2 + Math.max(1, rows.length) * rowH;
    var plotW = width - left - right;
    var svg = el("svg", {viewBox: "0 0 " + width + " " + height, "class": "ops-svg", "data-chart": "limits",
                         preserveAspectRatio: "xMidYMid meet"});
    rows.forEach(function (row, i) {
      var y = top + i * rowH;
      var value = Number(row.value) || 0;
      var limit = row.limit === null || row.limit === undefined ? null : Number(row.limit);
      // Without a cap there is nothing to measure against: the bar stays empty and the text says so.
      var ratio = limit && limit > 0 ? Math.min(value / limit, 1) : 0;
      var level = limit === null ? " ops-uncapped" : value >= limit ? " ops-over" : value >= 0.8 * limit ? " ops-near" : "";
      svg.appendChild(el("text", {x: left - 8, y: y + 16, "text-anchor": "end", "class": "ops-axis"}, row.label));
      svg.appendChild(el("rect", {x: left, y: y + 4, width: plotW, height: rowH - 10, "class": "ops-track"}));
      var bar = el("rect", {
        x: left, y: y + 4, width: Math.max(plotW * ratio, value > 0 && limit !== null ? 1 : 0), height: rowH - 10,
        "class": "ops-bar ops-spend" + level + " " + (row.cls || ""),
        "data-series": row.series || "spend", "data-label": row.label, "data-value": value,
        "data-limit": limit === null ? "" : limit
      });
      bar.appendChild(el("title", {}, row.label + ": $" + value.toFixed(2) + (limit === null ? " (no cap)" : " of $" + limit.toFixed(2))));
      svg.appendChild(bar);
      svg.appendChild(el("text", {x: left + plotW + 6, y: y + 16, "class": "ops-axis"},
                         "$" + value.toFixed(2) + (limit === null ? " / no cap" : " / $" + limit.toFixed(2))));
    });
    replace(container, svg, "No agents yet.", rows.length === 0);
  }

  window.OpsCharts = {groupedBars: groupedBars, limitBars: limitBars};
})();
