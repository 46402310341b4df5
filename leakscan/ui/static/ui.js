// The findings page's only script (served from the package: the Content-Security-Policy allows no
// inline script). A status change is saved at once; without this script each status form has
// its own save button and the filter form its own submit button.
// The filter form has no status select: status is filtered by the counts' links, so the
// only status selects on a page are the findings' own.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  for (const select of document.querySelectorAll("form.status-form select[name=status]")) {
    const form = select.form;
    const shown = form.querySelector(".saved");
    form.querySelector("button.save").hidden = true;
    select.dataset.saved = select.value;
    select.addEventListener("change", async () => {
      const wanted = select.value;
      shown.textContent = "saving…";
      try {
        // keepalive: the change is saved even if the page is left or reloaded right away
        const answer = await fetch(form.action, {
          method: "POST",
          keepalive: true,
          credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
          body: JSON.stringify({status: wanted}),
        });
        if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
        select.dataset.saved = wanted;
        shown.textContent = "saved";
      } catch (err) {
        select.value = select.dataset.saved;
        shown.textContent = `not saved (${err.message})`;
      }
    });
  }

  // a filter applies as soon as it is chosen, and the address names only the filters set
  const filters = document.querySelector("form.filters");
  if (filters) {
    const apply = () => {
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(filters)) {
        if (value) params.append(name, value);
      }
      const query = params.toString();
      location.assign("/" + (query ? "?" + query : ""));
    };
    filters.addEventListener("submit", (event) => {
      event.preventDefault();
      apply();
    });
    for (const select of filters.querySelectorAll("select")) select.addEventListener("change", apply);
  }
});
