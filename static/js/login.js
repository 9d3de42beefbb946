// /login: sign the browser in (the server sets the HttpOnly session cookie; the access token
// stays in this tab's memory), then go to ?next.
import { login, safeNext } from "./herald.js";

const form = document.getElementById("login-form");
const errorEl = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorEl.textContent = "";
  const data = new FormData(form);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await login(data.get("username"), data.get("password"));
    location.replace(safeNext(new URLSearchParams(location.search).get("next")));
  } catch (error) {
    errorEl.textContent = error.message;
    button.disabled = false;
  }
});
