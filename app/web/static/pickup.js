// The pickup counter, progressively enhanced: the page works without this file.
// 1. A barcode scanner types like a keyboard and ends with Enter: keys typed while no field has
//    the focus go to the scan box, so a scan works from anywhere on the page.
// 2. The queue refreshes itself every few seconds, unless someone is typing in it.
// 3. "Taking only part of the order?" shows the quantities when ticked; "Print" prints.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var scan = document.getElementById("scan");

  function typing(el) {
    if (!el || el === document.body) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  if (scan) {
    document.addEventListener("keydown", function (ev) {
      if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (typing(document.activeElement)) return;
      if (ev.key.length === 1 && ev.key !== " ") {
        ev.preventDefault();
        scan.focus();
        scan.value += ev.key;
        scan.form.classList.add("scan-box--armed");
      }
    });
    scan.addEventListener("blur", function () { scan.form.classList.remove("scan-box--armed"); });
  }

  var queue = document.getElementById("queue");
  if (queue) {
    var every = Math.max(5, parseInt(queue.getAttribute("data-refresh-s"), 10) || 30) * 1000;
    window.setInterval(function () {
      if (document.hidden || typing(document.activeElement) && queue.contains(document.activeElement)) return;
      fetch(window.location.href, { headers: { "X-Refresh": "queue" }, credentials: "same-origin" })
        .then(function (r) {
          if (r.redirected || !r.ok) { if (r.status === 401 || r.redirected) window.location.reload(); return null; }
          return r.text();
        })
        .then(function (html) {
          if (html === null || html === undefined) return;
          var hadFocus = queue.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
          queue.innerHTML = html;
          if (hadFocus) {
            var again = queue.querySelector('a[href="' + hadFocus + '"]');
            if (again) again.focus();
          }
        })
        .catch(function () { /* offline for a moment: the next round tries again */ });
    }, every);
  }

  var toggle = document.querySelector("[data-partial-toggle]");
  if (toggle) {
    var box = toggle.closest("fieldset");
    var sync = function () { box.classList.toggle("partial--open", toggle.checked); };
    toggle.addEventListener("change", sync);
    sync();
  }

  var print = document.querySelector("[data-print]");
  if (print) print.addEventListener("click", function () { window.print(); });
})();
