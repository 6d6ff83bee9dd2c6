// Starts Swagger UI on /docs over the daemon's own /openapi.json (no inline script:
// the page's Content-Security-Policy allows scripts from this server only).
window.addEventListener("load", function () {
  // fetch() refuses URLs with user:password@ (as when the page was opened so); the
  // browser sends the login it already holds for this server without them.
  var spec = new URL(document.getElementById("swagger-ui").dataset.spec, document.baseURI);
  spec.username = "";
  spec.password = "";
  window.ui = SwaggerUIBundle({
    url: spec.href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    withCredentials: true
  });
});
