// The console's login form: a double-submit CSRF token, then a JSON login.
"use strict";
(function () {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const submit = document.getElementById("login-submit");

  function showError(text) {
    error.textContent = text;
    error.hidden = false;
  }

  async function loginToken() {
    const res = await fetch("/console/api/login", { credentials: "same-origin" });
    const body = await res.json();
    return body.csrf_token;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const token = await loginToken();
      const res = await fetch("/console/api/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
        body: JSON.stringify({
          login: document.getElementById("login").value,
          password: document.getElementById("password").value,
        }),
      });
      if (res.ok) {
        window.location.replace("/console");
        return;
      }
      let detail = "Не получилось войти.";
      try {
        detail = (await res.json()).detail || detail;
      } catch (_) {
        /* not JSON */
      }
      showError(detail);
    } catch (_) {
      showError("Сервер не отвечает. Попробуйте ещё раз.");
    } finally {
      submit.disabled = false;
    }
  });
})();
