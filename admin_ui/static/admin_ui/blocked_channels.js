/* The Agent list's blocked-channel toggles: ticking a box posts the row's whole set to
 * POST /admin/api/agents/<agentId>/blocked-channels (["*"] when "All" is ticked) and shows what the
 * server stored; a refusal puts the boxes back. */
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function show(group, blocked) {
    var all = blocked.indexOf("*") !== -1;
    group.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      box.checked = all || blocked.indexOf(box.value) !== -1;
      box.disabled = all && box.value !== "*";
    });
    group.setAttribute("data-blocked", JSON.stringify(blocked));
  }

  function chosen(group) {
    var all = group.querySelector('input[value="*"]');
    if (all && all.checked) return ["*"];
    return Array.prototype.filter.call(group.querySelectorAll("input[type=checkbox]"), function (box) {
      return box.checked && box.value !== "*";
    }).map(function (box) { return box.value; });
  }

  function save(group) {
    var before = JSON.parse(group.getAttribute("data-blocked") || "[]");
    var status = group.querySelector(".ops-toggle-status");
    group.classList.add("ops-saving");
    status.textContent = "saving…";
    fetch(group.getAttribute("data-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken()},
      body: JSON.stringify({blockedChannels: chosen(group)})
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok || !body.success) throw new Error(body.error || ("HTTP " + response.status));
        show(group, body.blockedChannels || []);
        status.textContent = "saved";
        group.setAttribute("data-saved", String(Number(group.getAttribute("data-saved") || 0) + 1));
      });
    }).catch(function (exc) {
      show(group, before);
      status.textContent = "not saved: " + exc.message;
    }).finally(function () { group.classList.remove("ops-saving"); });
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement)) return;
    var group = box.closest(".ops-blocked");
    if (group) save(group);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".ops-blocked").forEach(function (group) {
      show(group, JSON.parse(group.getAttribute("data-blocked") || "[]"));
    });
  });
})();
