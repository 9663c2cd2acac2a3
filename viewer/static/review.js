// rapport view, the review-first page: the keyboard (Y/N/A answer the focused criterion, ↑↓ or
// J/K move between criteria, P/F overall, S save, Shift+S save and next, ? shows the keys), a
// review with no criterion answered refused by the form in one line, and the reviewer's name
// (kept in this browser by viewer.js) given to the server in a cookie, so the page it renders
// shows this reviewer's own answers and nobody else's before they have saved.
"use strict";

const REVIEWER_KEY = "rapport.reviewer";
const REVIEWER_COOKIE = "rapport_reviewer";

function cookieReviewer() {
  for (const part of document.cookie.split("; ")) {
    const [name, value] = part.split("=");
    if (name === REVIEWER_COOKIE) return decodeURIComponent(value || "");
  }
  return "";
}

// The server renders the page for the reviewer its cookie names: when the name kept in this
// browser is another one, tell the server and render again (true: the page is reloading).
function syncReviewer() {
  const name = localStorage.getItem(REVIEWER_KEY) || "";
  if (!name || cookieReviewer() === name) return false;
  document.cookie =
    REVIEWER_COOKIE + "=" + encodeURIComponent(name) + "; path=/; SameSite=Strict";
  if (!document.getElementById("review-form")) return false;
  location.reload();
  return true;
}

function setUpKeyboard(form) {
  const criteria = [...form.querySelectorAll(".criterion")];
  const help = document.getElementById("keys-help");
  const error = document.getElementById("form-error");
  let focused = 0;

  function focus(index) {
    if (!criteria.length) return;
    focused = Math.max(0, Math.min(criteria.length - 1, index));
    criteria.forEach((item, i) => item.classList.toggle("focused", i === focused));
    criteria[focused].focus({ preventScroll: true });
    criteria[focused].scrollIntoView({ block: "nearest" });
  }

  function choose(name, value) {
    const input = form.querySelector(`input[name="${CSS.escape(name)}"][value="${value}"]`);
    if (input) input.checked = true;
  }

  function toggleHelp() {
    help.hidden = !help.hidden;
    if (!help.hidden) help.scrollIntoView({ block: "nearest" });
  }

  function refusal() {
    const answered = [...form.querySelectorAll("input[type=radio]:checked")];
    if (!answered.some((input) => input.name.startsWith("c:"))) {
      return "Answer at least one criterion (Y, N or A) before saving.";
    }
    if (!answered.some((input) => input.name === "overall")) {
      return "Choose pass (P) or fail (F) overall before saving.";
    }
    return "";
  }

  function save(then) {
    form.querySelector(`button[name=then][value=${then}]`).click();
  }

  form.addEventListener("submit", (event) => {
    const why = refusal();
    error.hidden = !why;
    error.textContent = why;
    if (why) event.preventDefault();
  });
  criteria.forEach((item, i) => item.addEventListener("click", () => focus(i)));
  document.getElementById("show-keys").addEventListener("click", (event) => {
    event.preventDefault();
    toggleHelp();
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target.tagName === "TEXTAREA" || (target.tagName === "INPUT" && target.type === "text")) {
      return;
    }
    const key = event.key;
    const criterion = criteria[focused];
    let handled = true;
    if (key === "S") save("next");
    else if (key === "s") save("stay");
    else if (key === "?") toggleHelp();
    else if (key === "ArrowDown" || key === "j" || key === "J") focus(focused + 1);
    else if (key === "ArrowUp" || key === "k" || key === "K") focus(focused - 1);
    else if (key === "p" || key === "P") choose("overall", "YES");
    else if (key === "f" || key === "F") choose("overall", "NO");
    else if (criterion && "yna".includes(key.toLowerCase()) && key.length === 1) {
      const answer = { y: "YES", n: "NO", a: "NA" }[key.toLowerCase()];
      choose("c:" + criterion.dataset.criterion, answer);
      focus(focused + 1);
    } else handled = false;
    if (handled) event.preventDefault();
  });
  focus(0);
}

document.addEventListener("DOMContentLoaded", () => {
  if (syncReviewer()) {
    document.body.dataset.ready = "0"; // this document is going: wait for the next one
    return;
  }
  const form = document.getElementById("review-form");
  if (form) setUpKeyboard(form);
  document.body.dataset.reviewReady = "1";
});
