// The audit item page: frames, mask overlay and keys. Served as a file, so the CSP allows no inline script.
(() => {
  const root = document.getElementById("item");
  const id = root.dataset.reviewId, n = +root.dataset.n, frames = JSON.parse(root.dataset.frames);
  const frame = document.getElementById("frame"), mask = document.getElementById("mask");
  const scrub = document.getElementById("scrub"), label = document.getElementById("frameno");
  let pos = 0, timer = null;
  const contour = document.getElementById("contour"), zoom = document.getElementById("zoom");
  const show = p => { pos = (p + n) % n; frame.src = `/media/${id}/${pos}.jpg`;
                      mask.src = `/media/${id}/${pos}.${contour.checked ? "edge.png" : "png"}`;
                      scrub.value = pos; label.textContent = `frame ${frames[pos]} · ${pos + 1} of ${n}`; };
  const viewer = document.getElementById("viewer");
  const zoomed = () => { viewer.style.transform = zoom.checked ? "scale(2)" : ""; viewer.style.transformOrigin = "top left"; };
  const play = () => { if (timer) { clearInterval(timer); timer = null; } else { timer = setInterval(() => show(pos + 1), 250); } };
  const overlay = document.getElementById("overlay"), opacity = document.getElementById("opacity");
  const paint = () => { mask.style.display = overlay.checked ? "block" : "none"; mask.style.opacity = opacity.value / 100; };
  let sent = false;  // one request per page: a held key, or a key pressed while the next page loads, does nothing
  const send = form => { if (!sent) { sent = true; form.submit(); } };
  const reasons = [...document.querySelectorAll('input[name="reason"]')];
  const decide = v => {
    if (v === "correct") reasons.forEach(r => { r.checked = false; });
    document.getElementById("verdict-input").value = v; send(document.getElementById("decide"));
  };
  // "Different object" asks for the reason before it records anything (issue: N then 2 used to record no reason,
  // and the 2 landed on the next item). A reason chosen first (1-5, or a click) is recorded by N at once.
  const choice = document.getElementById("reasons"), hint = document.getElementById("choose-hint");
  const no = document.getElementById("no"), noLabel = no.textContent;
  let choosing = false;
  const choose = on => {
    choosing = on; choice.classList.toggle("choosing", on); hint.hidden = !on;
    no.textContent = on ? "Confirm: different object (Enter)" : noLabel;
    if (!on) reasons.forEach(r => { r.checked = false; });  // Esc: nothing chosen stays behind
  };
  const different = () => { if (choosing || reasons.some(r => r.checked)) decide("wrong"); else choose(true); };
  // once decided (its verdict revealed, when reveal is "after"), the page stays until the auditor moves on
  const decided = root.dataset.decided === "1";
  const next = () => { if (!sent) { sent = true; location.assign(document.getElementById("next").href); } };
  scrub.addEventListener("input", () => show(+scrub.value));
  contour.addEventListener("change", () => show(pos)); zoom.addEventListener("change", zoomed);
  overlay.addEventListener("change", paint); opacity.addEventListener("input", paint);
  document.getElementById("play").addEventListener("click", play);
  document.getElementById("yes").addEventListener("click", () => decide("correct"));
  no.addEventListener("click", different);  // a reason clicked with the mouse is chosen, never recorded by itself
  const typing = t => t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && !["range", "checkbox", "radio"].includes(t.type));
  document.addEventListener("keydown", e => {
    // auto-repeat and modifier combinations (Ctrl+S saves the page, it does not skip) are not keys of ours;
    // a slider, checkbox or reason (radio) that has focus does not take the keys away
    if (sent || e.repeat || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key === "?") { const keys = document.getElementById("keys"); keys.hidden = !keys.hidden; return; }
    const k = e.key.toLowerCase();
    if (k === "y") decide("correct");
    else if (k === "n") different();
    else if (k === "s") send(document.getElementById("skip"));
    else if (k === "u") send(document.getElementById("undo"));
    else if (k === "o") { overlay.checked = !overlay.checked; paint(); }
    else if (k === "c") { contour.checked = !contour.checked; show(pos); }
    else if (k === "z") { zoom.checked = !zoom.checked; zoomed(); }
    else if (k.length === 1 && k >= "1" && k <= String(reasons.length)) {
      reasons[+k - 1].checked = true;
      if (choosing) decide("wrong");  // N, then the reason: recorded with it
    }
    // Enter is taken from a focused button too, so a click and a submit cannot both happen
    else if (e.key === "Enter" && choosing) { e.preventDefault(); decide("wrong"); }
    else if (e.key === "Escape") choose(false);
    else if ((e.key === "Enter" || e.key === "ArrowRight") && decided) { e.preventDefault(); next(); }
    else if (e.key === "ArrowRight") { e.preventDefault(); show(pos + 1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); show(pos - 1); }
    else if (e.key === " ") { e.preventDefault(); play(); }
  });
})();
