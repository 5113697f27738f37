// The console's forms: a copy button copies the text of the element it names (a key shown
// once); a PEM file chosen is read into the text area it names, so a key is never typed.
(function () {
  'use strict';
  document.querySelectorAll('[data-copy]').forEach(function (button) {
    button.addEventListener('click', function () {
      var source = document.getElementById(button.getAttribute('data-copy'));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = 'Copied';
        });
      }
    });
  });
  document.querySelectorAll('input[type=file][data-fill]').forEach(function (input) {
    input.addEventListener('change', function () {
      var target = document.getElementById(input.getAttribute('data-fill'));
      var file = input.files && input.files[0];
      if (!target || !file) {
        return;
      }
      var reader = new FileReader();
      reader.onload = function () {
        target.value = String(reader.result).trim();
      };
      reader.readAsText(file);
    });
  });
})();

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
