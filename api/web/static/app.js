// The app's shell: theme, session, navigation between pages (history API; state in the URL).
import { ApiError, currentSession, loadSession, signOut } from "./api.js";
import { go, toast } from "./ui.js";
import { signInPage } from "./pages/signin.js";
import { collectionsPage } from "./pages/collections.js";
import { searchPage } from "./pages/search.js";
import { regionPage } from "./pages/region.js";
import { comparePage } from "./pages/compare.js";
import { duplicatesPage } from "./pages/duplicates.js";
import { trashPage } from "./pages/trash.js";

const PAGES = { collections: collectionsPage, search: searchPage, region: regionPage, compare: comparePage,
  duplicates: duplicatesPage, trash: trashPage };
const THEME_KEY = "dinoseek-theme"; // the chosen theme only; never the key
let leave = null; // aborts the listeners of the page shown

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const button = document.getElementById("theme");
  button.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
  button.title = button.getAttribute("aria-label");
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const theme = dark ? "light" : "dark";
  localStorage.setItem(THEME_KEY, theme);
  applyTheme(theme);
}

function showChrome(session) {
  document.getElementById("nav").hidden = !session.signedIn;
  document.getElementById("signout").hidden = !session.signedIn;
  const who = document.getElementById("who");
  who.hidden = !session.signedIn;
  who.textContent = session.readOnly ? "read-only" : "read-write";
  document.body.classList.toggle("read-only", session.readOnly);
}

async function render() {
  if (leave) leave.abort();
  leave = new AbortController();
  const main = document.getElementById("main");
  const session = currentSession();
  showChrome(session);
  const name = location.pathname.replace(/^\/+/, "").split("/")[0] || "collections";
  document.querySelectorAll("[data-page-link]").forEach((a) => {
    if (a.dataset.pageLink === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const page = session.signedIn ? PAGES[name] || collectionsPage : signInPage;
  main.replaceChildren();
  document.title = `dinoseek — ${session.signedIn ? name : "sign in"}`;
  try {
    await page(main, { signal: leave.signal, params: new URLSearchParams(location.search), session, rerender: render });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      await loadSession().catch(() => {});
      if (!currentSession().signedIn) return render();
    }
    toast(err.message, true);
  }
  document.body.dataset.ready = name;
}

async function start() {
  applyTheme(localStorage.getItem(THEME_KEY));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(localStorage.getItem(THEME_KEY)));
  document.getElementById("theme").addEventListener("click", toggleTheme);
  document.getElementById("signout").addEventListener("click", async () => {
    await signOut();
    go("/");
  });
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[data-nav]");
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    go(a.getAttribute("href"));
  });
  window.addEventListener("popstate", render);
  window.addEventListener("dinoseek:navigate", () => { render(); document.getElementById("main").focus(); });
  await loadSession();
  await render();
}

start();
