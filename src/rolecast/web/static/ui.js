// rolecast's page, the parts Gradio does not do (issue 23): the gallery's cards pick a
// character and filter as the search box is typed in; a file dropped anywhere on the page is
// imported; a scene frame in the chat enlarges on click; the keyboard: Esc stops, the arrows
// swipe (outside a text box); the dark theme is remembered.
(() => {
  if (window.rolecastUI) return;
  const UI = (window.rolecastUI = {});
  const $ = (sel) => document.querySelector(sel);

  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest(".rc-import-card")) {
      const input = $("#rc-import input[type=file]");
      if (input) input.click();
      return;
    }
    const card = e.target.closest && e.target.closest(".rc-card[data-id]");
    if (card) {  // the pick itself goes with the gallery's click event (page.py)
      for (const c of document.querySelectorAll(".rc-card")) c.classList.toggle("rc-current", c === card);
      return;
    }
    const frame = e.target.closest && e.target.closest(".rc-inline-frame img");
    if (frame) {
      const box = document.createElement("div");
      box.className = "rc-lightbox";
      box.innerHTML = `<img alt="">`;
      box.firstChild.src = frame.src;
      box.addEventListener("click", () => box.remove());
      document.body.appendChild(box);
      return;
    }
    if (e.target.closest && e.target.closest("#rc-theme")) UI.toggleTheme();
  });

  document.addEventListener("input", (e) => {
    if (!e.target.closest || !e.target.closest("#rc-search")) return;
    const q = e.target.value.trim().toLowerCase();
    for (const c of document.querySelectorAll(".rc-card")) {
      c.hidden = q !== "" && !c.dataset.search.includes(q);
    }
  });

  // a file dropped anywhere: handed to the import box (the same importers as the CLI)
  document.addEventListener("dragover", (e) => {
    if (e.dataTransfer && [...e.dataTransfer.types].includes("Files")) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    if (e.target.closest && e.target.closest("#rc-import")) return; // its own drop zone
    e.preventDefault(); // a file dropped on the page never replaces the page
    const input = $("#rc-import input[type=file]");
    if (!input) return;
    const files = new DataTransfer();
    files.items.add(e.dataTransfer.files[0]);
    input.files = files.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });

  document.addEventListener("keydown", (e) => {
    const inside = (sel) => e.target.closest && e.target.closest(sel);
    if (e.key === "Escape") {
      const lightbox = $(".rc-lightbox");
      if (lightbox) return lightbox.remove();
      if (inside(".rc-hidden, [role=listbox], [aria-expanded=true], #rc-picker, #rc-others")) return;
      const stop = $("#rc-stop");
      if (stop) stop.click();
      return;
    }
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    // swipes only from the page itself or the chat, never from a control that uses arrows,
    // and only when the last reply has alternatives to swipe between
    const free = e.target === document.body || (inside("#rc-chat") && !inside("button, audio, input, textarea"));
    if (!free) return;
    const notes = [...document.querySelectorAll("#rc-chat .rc-note")];
    if (!notes.length || !/\b\d+\/\d+\b/.test(notes[notes.length - 1].textContent)) return;
    e.preventDefault();
    const button = $(e.key === "ArrowLeft" ? "#rc-prev" : "#rc-next");
    if (button) button.click();
  });

  UI.toggleTheme = (dark) => {
    const on = dark === undefined ? !document.body.classList.contains("dark") : dark;
    document.body.classList.toggle("dark", on);
    try {
      localStorage.setItem("rolecast-theme", on ? "dark" : "light");
    } catch (err) {}
  };
  const saved = (() => {
    try {
      return localStorage.getItem("rolecast-theme");
    } catch (err) {
      return null;
    }
  })();
  if (saved) {
    const apply = () => UI.toggleTheme(saved === "dark");
    if (document.body) apply();
    else document.addEventListener("DOMContentLoaded", apply);
  }
})();
