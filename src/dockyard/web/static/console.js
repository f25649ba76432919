// Every htmx request that changes something carries the session's CSRF field, as the forms do.
document.addEventListener("htmx:configRequest", function (evt) {
  if (evt.detail.verb === "get") { return; }
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { evt.detail.parameters["csrf_token"] = meta.content; }
});

// A panel marked data-swap-errors (the instance's logs) shows a refusal in words where its
// content goes, and keeps polling; htmx leaves the content of other elements as it was.
document.addEventListener("htmx:beforeSwap", function (evt) {
  if (evt.detail.xhr.status >= 400 && evt.detail.elt.hasAttribute("data-swap-errors")) {
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
  }
});
