// rapport view: the reviewer's name (kept in this browser), the review form filled in with
// their earlier answers, and the overview refreshed while a run writes. No model text is ever
// put into the page as HTML here: the server escapes it, and this script only moves its markup.
"use strict";

const NAME_KEY = "rapport.reviewer";

function reviewerName(ask) {
  let name = localStorage.getItem(NAME_KEY) || "";
  if (!name && ask) {
    name = (window.prompt("Your name, kept in this browser for your reviews:") || "").trim();
    if (name) localStorage.setItem(NAME_KEY, name);
  }
  return name;
}

function showName() {
  const slot = document.getElementById("reviewer-name");
  if (!slot) return;
  const name = reviewerName(false);
  slot.textContent = name ? "reviewer: " + name + " " : "";
  const change = document.createElement("a");
  change.href = "#";
  change.textContent = name ? "(change)" : "set reviewer name";
  change.addEventListener("click", (event) => {
    event.preventDefault();
    localStorage.removeItem(NAME_KEY);
    reviewerName(true);
    showName();
  });
  slot.appendChild(change);
}

function setUpReviewForm() {
  const form = document.getElementById("review-form");
  if (!form) return;
  const name = reviewerName(false);
  const earlier = JSON.parse(form.dataset.earlier || "{}")[name] || {};
  for (const [criterion, answer] of Object.entries(earlier)) {
    const field = criterion === "overall" ? "overall" : "c:" + criterion;
    for (const input of form.querySelectorAll("input[type=radio]")) {
      if (input.name === field && input.value === answer) input.checked = true;
    }
  }
  form.addEventListener("submit", (event) => {
    const who = reviewerName(true);
    if (!who) {
      event.preventDefault();
      return;
    }
    document.getElementById("reviewer").value = who;
  });
}

function setUpNextLink() {
  const link = document.getElementById("next-unreviewed");
  const name = reviewerName(false);
  if (link && name) link.href = "/queue/next?reviewer=" + encodeURIComponent(name);
}

function setUpRefresh() {
  const main = document.getElementById("content");
  const part = main && main.dataset.refresh;
  if (!part) return;
  setInterval(async () => {
    try {
      const response = await fetch(part, { cache: "no-store" });
      if (response.ok) main.innerHTML = await response.text(); // escaped server-side
    } catch (error) {
      // the server is gone or busy: the next tick tries again
    }
  }, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  showName();
  setUpReviewForm();
  setUpNextLink();
  setUpRefresh();
  document.body.dataset.ready = "1";
});
