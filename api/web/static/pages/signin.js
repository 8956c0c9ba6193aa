// Sign in with an API key: it goes in a JSON body, once; the server answers a cookie session.
import { signIn } from "../api.js";
import { h } from "../ui.js";

export async function signInPage(main, { rerender }) {
  const key = h("input", { id: "key", name: "key", type: "password", autocomplete: "current-password", required: true });
  const problem = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "panel", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "Use an API key of this server (DINOSEEK_API_KEYS). A read-only key can search and look, not change anything."),
    h("label", { for: "key" }, "API key", key),
    h("button", { type: "submit", id: "signin" }, "Sign in"),
    problem);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    problem.textContent = "";
    try {
      await signIn(key.value);
      key.value = "";
      await rerender();
    } catch (err) {
      problem.textContent = err.message;
    }
  });
  main.append(h("div", { class: "signin" }, form));
  key.focus();
}
