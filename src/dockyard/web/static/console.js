// Every htmx request that changes something carries the session's CSRF field, as the forms do.
document.addEventListener("htmx:configRequest", function (evt) {
  if (evt.detail.verb === "get") { return; }
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { evt.detail.parameters["csrf_token"] = meta.content; }
});
