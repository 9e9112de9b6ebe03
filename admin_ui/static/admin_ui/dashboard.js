/* The admin dashboard: GET /admin/api/dashboard with the session cookie, rendered into the page, again
 * every data-refresh-seconds without reloading it. Charts come from charts.js (local SVG). */
(function () {
  "use strict";

  var root = document.querySelector(".ops-dashboard");
  if (!root) return;
  var url = root.getAttribute("data-url");
  var refreshMs = Math.max(1, Number(root.getAttribute("data-refresh-seconds")) || 15) * 1000;

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function money(value) {
    if (value === null || value === undefined || value === "") return "–";
    var n = Number(value);
    return isNaN(n) ? text(value) : "$" + n.toFixed(2);
  }

  function when(iso) {
    var date = iso ? new Date(iso) : null;
    return date && !isNaN(date.getTime()) ? date.toLocaleString() : text(iso);
  }

  function cell(row, content, cls) {
    var td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content); else td.textContent = text(content);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fillTable(id, rows, columns, emptyText) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    body.textContent = "";
    if (!rows || rows.length === 0) {
      var tr = document.createElement("tr");
      var td = cell(tr, emptyText, "ops-muted");
      td.colSpan = columns.length;
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (item) {
      var tr = document.createElement("tr");
      columns.forEach(function (column) { column(tr, item); });
      body.appendChild(tr);
    });
  }

  function badge(ok, yes, no) {
    var span = document.createElement("span");
    span.className = "ops-badge " + (ok ? "ops-ok" : "ops-bad");
    span.textContent = ok ? yes : no;
    return span;
  }

  function channelNames(channels) {
    if (!channels) return "";
    if (Array.isArray(channels)) return channels.join(", ");
    return Object.keys(channels).filter(function (name) { return channels[name]; }).map(function (name) {
      var c = channels[name];
      var where = c && (c.number || c.address);
      return where ? name + " " + where : name;
    }).join(", ");
  }

  /* spend: {today, month, dayLimit, monthLimit, dayRatio, monthRatio} of an agent or organization. */
  function spendText(item, period) {
    var s = item.spend || {};
    var cap = s[period === "today" ? "dayLimit" : "monthLimit"];
    return money(s[period]) + (cap === null || cap === undefined ? " (no cap)" : " / " + money(cap));
  }

  function renderAlerts(alerts) {
    var list = document.getElementById("ops-alert-list");
    list.textContent = "";
    if (!alerts || alerts.length === 0) {
      var ok = document.createElement("li");
      ok.className = "ops-muted";
      ok.textContent = "No alerts.";
      list.appendChild(ok);
      return;
    }
    alerts.forEach(function (alert) {
      var li = document.createElement("li");
      li.className = "ops-alert ops-alert-" + (alert.level || "warning");
      li.setAttribute("data-kind", text(alert.kind));
      li.textContent = text(alert.message || alert.kind);
      list.appendChild(li);
    });
  }

  var USAGE_LABELS = {
    totalMessages: "Messages", messagesToday: "Messages today", totalCalls: "Calls", callsToday: "Calls today",
    callMinutes: "Call minutes", todayActions: "Actions today", todayCost: "Cost today",
    monthCost: "Cost this month", totalCost: "Total cost", activeAgents: "Agents", connectedAgents: "Connected"
  };

  function renderUsage(usage) {
    var box = document.getElementById("ops-usage");
    box.textContent = "";
    Object.keys(USAGE_LABELS).forEach(function (key) {
      if (!usage || usage[key] === undefined) return;
      var card = document.createElement("div");
      card.className = "ops-card";
      card.setAttribute("data-key", key);
      var number = document.createElement("strong");
      number.textContent = /Cost$|^totalCost$/.test(key) ? money(usage[key]) : text(usage[key]);
      var label = document.createElement("span");
      label.textContent = USAGE_LABELS[key];
      card.appendChild(number);
      card.appendChild(label);
      box.appendChild(card);
    });
  }

  function renderVolume(series) {
    var days = series || [];
    function values(key) { return days.map(function (d) { return d[key] || 0; }); }
    window.OpsCharts.groupedBars(document.getElementById("ops-volume-chart"), {
      name: "volume", title: "Messages and calls per day",
      labels: days.map(function (d) { return d.date; }),
      series: [
        {name: "sent", cls: "ops-messages", values: values("outbound")},
        {name: "received", cls: "ops-received", values: values("inbound")},
        {name: "calls", cls: "ops-calls", values: values("calls")},
        {name: "failed", cls: "ops-failed", values: values("failed")}
      ]
    });
  }

  function limitRows(item, label, cls) {
    var s = item.spend || {};
    return [
      {label: label + " today", series: cls + "-day", cls: "ops-" + cls, value: s.today, limit: s.dayLimit},
      {label: label + " month", series: cls + "-month", cls: "ops-" + cls, value: s.month, limit: s.monthLimit}
    ];
  }

  function renderCosts(agents, organizations) {
    var rows = [];
    (organizations || []).forEach(function (org) { rows = rows.concat(limitRows(org, "org " + org.orgId, "org")); });
    (agents || []).forEach(function (agent) { rows = rows.concat(limitRows(agent, agent.agentId, "agent")); });
    window.OpsCharts.limitBars(document.getElementById("ops-cost-chart"), rows);
  }

  function renderAgents(agents) {
    fillTable("ops-agents", agents, [
      function (tr, a) { cell(tr, a.displayName ? a.displayName + " (" + a.agentId + ")" : a.agentId); },
      function (tr, a) { cell(tr, a.orgId); },
      function (tr, a) { cell(tr, a.status); },
      function (tr, a) {
        var where = [a.phoneNumber, a.whatsappNumber && "WhatsApp " + a.whatsappNumber, a.emailAddress].filter(Boolean);
        cell(tr, (a.channels || []).join(", ") + (where.length ? " · " + where.join(", ") : ""));
      },
      function (tr, a) { cell(tr, (a.blockedChannels || []).join(", ") || "none"); },
      function (tr, a) { cell(tr, badge(a.connected, "connected", "offline")).setAttribute("data-agent", a.agentId); },
      function (tr, a) { cell(tr, spendText(a, "today")); },
      function (tr, a) { cell(tr, spendText(a, "month")); }
    ], "No agents yet: provision one.");
  }

  function renderServices(services) {
    var rows = Object.keys(services || {}).map(function (name) { return Object.assign({name: name}, services[name]); });
    fillTable("ops-services", rows, [
      function (tr, s) { cell(tr, s.name + (s.mode ? " (" + s.mode + ")" : "")); },
      function (tr, s) { cell(tr, badge(!!s.configured, "configured", "not configured")); },
      function (tr, s) {
        var r = s.readiness;
        cell(tr, r === "not_configured" || r === undefined ? "–" : badge(r === "ok", "ready", text(r)))
          .setAttribute("data-readiness", text(r));
      },
      function (tr, s) {
        var e = s.lastError;
        cell(tr, e ? when(e.at) + ": " + (e.message || e.code) + (e.code ? " (" + e.code + ")" : "") : "none");
      }
    ], "No providers.");
  }

  function renderEvents(data) {
    var failures = data.deliveryFailures || {};
    document.getElementById("ops-failure-count").textContent = text(failures.count || 0);
    fillTable("ops-failures", failures.recent, [
      function (tr, f) { cell(tr, when(f.createdAt)); },
      function (tr, f) { cell(tr, f.agentId); },
      function (tr, f) { cell(tr, f.channel); },
      function (tr, f) { cell(tr, f.to); },
      function (tr, f) { cell(tr, [f.errorCode, f.errorMessage].filter(Boolean).join(" ") || f.status); }
    ], "No delivery failures.");
    var optOuts = data.optOuts || {};
    document.getElementById("ops-optout-count").textContent =
      text(optOuts.total || 0) + " in all, " + text(optOuts.lastDays || 0) + " in the last 14 days";
    var byChannel = optOuts.byChannel || {};
    fillTable("ops-optouts", Object.keys(byChannel).map(function (c) { return {channel: c, count: byChannel[c]}; }), [
      function (tr, o) { cell(tr, o.channel); },
      function (tr, o) { cell(tr, o.count); }
    ], "No opt-outs.");
  }

  function render(data) {
    renderAlerts(data.alerts);
    renderUsage(data.usage);
    renderVolume(data.series);
    renderCosts(data.agents, data.organizations);
    renderAgents(data.agents);
    renderServices(data.services);
    renderEvents(data);
    document.getElementById("ops-updated-at").textContent = new Date().toLocaleTimeString();
    root.setAttribute("data-loaded", String(Number(root.getAttribute("data-loaded") || 0) + 1));
  }

  function load() {
    var error = document.getElementById("ops-error");
    return fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
          return body;
        });
      })
      .then(function (data) { error.textContent = ""; render(data); })
      .catch(function (exc) { error.textContent = "Could not refresh: " + exc.message; });
  }

  load();
  setInterval(function () { if (!document.hidden) load(); }, refreshMs);
})();
