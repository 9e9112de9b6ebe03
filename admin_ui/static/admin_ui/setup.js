/* The setup wizard: one step at a time, each provider's test button posting JSON (with the CSRF token)
 * to the admin API, then save (POST /admin/api/save) and deploy (POST /admin/api/deploy). Which steps are
 * done comes from GET /admin/api/status and from the tests passed on this page. */
(function () {
  "use strict";

  var root = document.querySelector(".ops-wizard");
  if (!root) return;
  var csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  var steps = Array.prototype.slice.call(root.querySelectorAll("fieldset.ops-step"));
  var current = 0;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {error: "HTTP " + response.status}; }).then(function (data) {
        data.httpStatus = response.status;
        return data;
      });
    });
  }

  function stateFor(slug, state, label) {
    var mark = root.querySelector('[data-state-for="' + slug + '"]');
    if (!mark) return;
    mark.className = "ops-step-state ops-" + state;
    mark.textContent = label;
    var step = root.querySelector('fieldset[data-step="' + slug + '"]');
    if (step) step.setAttribute("data-state", state);
  }

  function result(slug, ok, message) {
    var out = root.querySelector('[data-result-for="' + slug + '"]');
    out.className = "ops-result " + (ok ? "ops-ok" : "ops-bad");
    out.textContent = message;
  }

  function show(index) {
    current = Math.max(0, Math.min(index, steps.length - 1));
    steps.forEach(function (step, i) { step.classList.toggle("ops-active", i === current); });
    root.querySelectorAll("#ops-step-list a").forEach(function (link) {
      link.classList.toggle("ops-current", link.getAttribute("data-step") === steps[current].getAttribute("data-step"));
    });
    if (steps[current].getAttribute("data-step") === "save") summarize();
    var focus = steps[current].querySelector("input, button");
    if (focus) focus.focus();
  }

  function fieldValue(name) {
    var input = root.querySelector('[name="' + name + '"]');
    if (!input) return "";
    return input.type === "checkbox" ? (input.checked ? "true" : "false") : input.value.trim();
  }

  /* Changed fields only: an untouched secret stays as configured, an untouched default is not pinned. */
  function changedCredentials() {
    var credentials = {};
    root.querySelectorAll("fieldset.ops-step input[name]").forEach(function (input) {
      if (input.name === "csrfmiddlewaretoken") return;
      if (input.type === "checkbox") {
        if (input.checked !== input.defaultChecked) credentials[input.name] = input.checked ? "true" : "false";
      } else if (input.value.trim() !== "" && input.value.trim() !== input.defaultValue.trim()) {
        credentials[input.name] = input.value.trim();
      }
    });
    return credentials;
  }

  function summarize() {
    var list = document.getElementById("ops-save-summary");
    list.textContent = "";
    var credentials = changedCredentials();
    var keys = Object.keys(credentials);
    if (keys.length === 0) {
      var none = document.createElement("li");
      none.className = "ops-muted";
      none.textContent = "Nothing changed.";
      list.appendChild(none);
    }
    keys.forEach(function (key) {
      var input = root.querySelector('[name="' + key + '"]');
      var li = document.createElement("li");
      var shown = input.type === "password" ? "•••• (" + credentials[key].length + " characters)" : credentials[key];
      li.textContent = key + " = " + shown;
      list.appendChild(li);
    });
  }

  function runTest(step) {
    var slug = step.getAttribute("data-step");
    var mapping = JSON.parse(step.getAttribute("data-test-fields") || "{}");
    var body = {};
    Object.keys(mapping).forEach(function (jsonName) { body[jsonName] = fieldValue(mapping[jsonName]); });
    result(slug, true, "Testing…");
    return post(step.getAttribute("data-test-url"), body).then(function (data) {
      if (data.success) {
        result(slug, true, data.message || "OK");
        stateFor(slug, "done", "tested ✓");
      } else {
        result(slug, false, data.message || data.error || "Failed");
        stateFor(slug, "failed", "test failed");
      }
    }).catch(function (exc) { result(slug, false, exc.message); });
  }

  function applyStatus(status) {
    steps.forEach(function (step) {
      var slug = step.getAttribute("data-step");
      var key = step.getAttribute("data-status-key");
      var line = root.querySelector('[data-configured-for="' + slug + '"]');
      if (key && status[key]) {
        var configured = !!status[key].configured;
        if (line) {
          line.textContent = configured ? "Configured" + (status[key].accountSid ? " (account " + status[key].accountSid + ")" : "") + "." : "Not configured.";
        }
        var mark = root.querySelector('[data-state-for="' + slug + '"]');
        if (configured && mark && !mark.classList.contains("ops-done")) stateFor(slug, "configured", "configured");
      }
    });
    var server = status.server || {};
    var baseLine = root.querySelector('[data-configured-for="base-url"]');
    if (baseLine && server.publicBaseUrl) baseLine.textContent = "Now: " + server.publicBaseUrl + ".";
    var modeLine = root.querySelector('[data-configured-for="mode"]');
    if (modeLine && server.demoMode !== undefined) modeLine.textContent = "Now: demo mode " + (server.demoMode ? "on" : "off") + ".";
  }

  function loadStatus() {
    return fetch(root.getAttribute("data-status-url"), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.json(); })
      .then(applyStatus)
      .catch(function () { /* the page still works without it; the step marks stay empty */ });
  }

  function save() {
    var credentials = changedCredentials();
    if (Object.keys(credentials).length === 0) {
      result("save", false, "Nothing changed, nothing to save.");
      return Promise.resolve();
    }
    result("save", true, "Saving…");
    return post(root.getAttribute("data-save-url"), {credentials: credentials}).then(function (data) {
      if (data.success) {
        result("save", true, (data.message || "Saved.") + " " + (data.saved || []).join(", "));
        stateFor("save", "done", "saved ✓");
        steps.forEach(function (step) {
          if (step.getAttribute("data-state") === "changed") stateFor(step.getAttribute("data-step"), "done", "saved ✓");
        });
        // Saved values are now the baseline: a second save sends only what changes after this one.
        root.querySelectorAll("fieldset.ops-step input[name]").forEach(function (input) {
          if (input.type === "checkbox") input.defaultChecked = input.checked;
          else if (input.type !== "password") input.defaultValue = input.value;
        });
      } else {
        result("save", false, data.error || data.message || "Not saved.");
      }
    });
  }

  function deploy() {
    result("save", true, "Deploying…");
    return post(root.getAttribute("data-deploy-url"), {}).then(function (data) {
      if (!data.success) {
        result("save", false, data.error || data.message || "Not deployed.");
        return;
      }
      result("save", true, (data.message || "Restarting.") + " Waiting for the server…");
      waitForServer(Date.now() + 60000);
    }).catch(function () { waitForServer(Date.now() + 60000); });
  }

  function waitForServer(deadline) {
    fetch("/health", {cache: "no-store"}).then(function (response) {
      if (!response.ok) throw new Error("not yet");
      result("save", true, "Deployed: the server is back.");
      stateFor("save", "done", "deployed ✓");
      loadStatus();
    }).catch(function () {
      if (Date.now() < deadline) setTimeout(function () { waitForServer(deadline); }, 1000);
      else result("save", false, "The server did not come back within a minute; check its logs.");
    });
  }

  root.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLElement)) return;
    if (target.classList.contains("ops-test")) runTest(target.closest("fieldset"));
    else if (target.classList.contains("ops-next")) show(current + 1);
    else if (target.classList.contains("ops-prev")) show(current - 1);
    else if (target.id === "ops-save") save();
    else if (target.id === "ops-deploy") deploy();
    else if (target.matches("#ops-step-list a")) {
      event.preventDefault();
      var slug = target.getAttribute("data-step");
      show(steps.findIndex(function (step) { return step.getAttribute("data-step") === slug; }));
    }
  });

  // A step whose fields were edited says so until it is tested or saved.
  function edited(event) {
    var step = event.target instanceof HTMLElement ? event.target.closest("fieldset.ops-step") : null;
    if (!step || step.getAttribute("data-step") === "save") return;
    var state = step.getAttribute("data-state");
    if (state !== "changed") stateFor(step.getAttribute("data-step"), "changed", "changed, not saved");
  }
  root.addEventListener("input", edited);
  root.addEventListener("change", edited);

  root.classList.add("ops-js");
  show(0);
  loadStatus();
})();
