// The checkout page: a countdown to the order's deadline, starting a payment at the chosen
// provider, and the order's status followed live over Server-Sent Events (no polling, no
// reload). Everything it calls is authorised by the link's token, which it reads from the page.
"use strict";

(function () {
  const root = document.getElementById("checkout");
  if (!root) return;
  const data = root.dataset;
  // The texts of every status and which ones are final, from the server's one table.
  const statuses = JSON.parse(data.statuses);
  const finalStatuses = statuses.final;
  const $ = (id) => document.getElementById(id);

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function statusText(status, closeReason) {
    return statuses.texts[status + ":" + closeReason] || statuses.texts[status] || status;
  }

  function render(status, closeReason) {
    root.dataset.status = status;
    const line = $("status");
    line.textContent = statusText(status, closeReason);
    line.className = "status " + status;
    if (finalStatuses.includes(status)) {
      $("choose").hidden = true;
      $("qr").hidden = true;
      $("countdown").hidden = true;
      $("done").hidden = false;
      showError("");
    }
  }

  // Countdown to the deadline, from the server's time of the deadline (the buyer's clock may
  // be off by a little; the server decides).
  const deadline = Number(data.deadline);
  function tick() {
    if (finalStatuses.includes(root.dataset.status)) return;
    const left = Math.max(0, Math.floor((deadline - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    $("countdown").textContent = left > 0
      ? "Pay within " + minutes + ":" + seconds
      : "Time is up: the order is being closed";
    if (left === 0) $("choose").hidden = true;
  }
  tick();
  setInterval(tick, 1000);

  function showQr(payment) {
    const image = $("qr-image");
    image.src = payment.qr_png_url;
    image.dataset.payNo = payment.pay_no;
    $("qr-provider").textContent = payment.provider_name;
    const open = $("qr-open");
    if (payment.code_url && /^(https?|weixin|alipays?):/i.test(payment.code_url)) {
      open.href = payment.code_url;
      open.hidden = false;
    } else {
      open.hidden = true;
    }
    $("qr").hidden = false;
  }

  document.querySelectorAll("#choose button[data-provider]").forEach((button) => {
    button.addEventListener("click", async () => {
      showError("");
      const buttons = document.querySelectorAll("#choose button");
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const response = await fetch(data.payments, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ provider: button.dataset.provider }),
          credentials: "omit",
        });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          showError((body.error && body.error.message) || "The payment could not be started; try again.");
          return;
        }
        showQr(body);
      } catch (err) {
        showError("The payment could not be started: the connection failed. Try again.");
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    });
  });

  if (!finalStatuses.includes(data.status)) {
    const events = new EventSource(data.events);
    events.addEventListener("status", (event) => {
      let update;
      try { update = JSON.parse(event.data); } catch (err) { return; }
      render(update.status, update.close_reason);
      if (finalStatuses.includes(update.status)) events.close();
    });
  }
})();
