// The console's dashboard refreshes its figures in place: every data-refresh-seconds it reads
// its own page again and swaps #dashboard for the new one. Without this script the page is
// the same, only still. A refresh says so (X-Console-Refresh): it does not keep the session
// from ending after its idle timeout.
(function () {
  'use strict';
  var board = document.getElementById('dashboard');
  if (!board) {
    return;
  }
  var seconds = Number(board.getAttribute('data-refresh-seconds')) || 10;
  function refresh() {
    fetch(window.location.href, { credentials: 'same-origin', headers: { Accept: 'text/html', 'X-Console-Refresh': '1' } })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var next = new DOMParser().parseFromString(text, 'text/html').getElementById('dashboard');
        var current = document.getElementById('dashboard');
        if (next && current) {
          current.replaceWith(next);
          document.body.setAttribute('data-refreshed-at', String(Date.now()));
        }
      })
      .catch(function () {
        // The next tick tries again.
      });
  }
  window.setInterval(refresh, seconds * 1000);
})();
