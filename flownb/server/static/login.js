// The sign-in form posts itself; this only says why the last attempt came back.
"use strict";
if (new URLSearchParams(location.search).has("error")) {
  document.getElementById("login-error").hidden = false;
}
