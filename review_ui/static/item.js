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
  let sent = false;  // one decision per page: a held key must not decide the next item too
  const send = form => { if (!sent) { sent = true; form.submit(); } };
  const decide = v => {
    if (v === "correct") document.querySelectorAll('input[name="reason"]').forEach(r => { r.checked = false; });
    document.getElementById("verdict-input").value = v; send(document.getElementById("decide"));
  };
  scrub.addEventListener("input", () => show(+scrub.value));
  contour.addEventListener("change", () => show(pos)); zoom.addEventListener("change", zoomed);
  const reasons = [...document.querySelectorAll('input[name="reason"]')];
  overlay.addEventListener("change", paint); opacity.addEventListener("input", paint);
  document.getElementById("play").addEventListener("click", play);
  document.getElementById("yes").addEventListener("click", () => decide("correct"));
  document.getElementById("no").addEventListener("click", () => decide("wrong"));
  const typing = t => t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && !["range", "checkbox"].includes(t.type));
  document.addEventListener("keydown", e => {
    // auto-repeat and modifier combinations (Ctrl+S saves the page, it does not skip) are not keys of ours;
    // a slider or checkbox that has focus does not take the keys away
    if (e.repeat || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key === "?") { const keys = document.getElementById("keys"); keys.hidden = !keys.hidden; return; }
    const k = e.key.toLowerCase();
    if (k === "y") decide("correct");
    else if (k === "n") decide("wrong");
    else if (k === "s") send(document.getElementById("skip"));
    else if (k === "u") send(document.getElementById("undo"));
    else if (k === "o") { overlay.checked = !overlay.checked; paint(); }
    else if (k === "c") { contour.checked = !contour.checked; show(pos); }
    else if (k === "z") { zoom.checked = !zoom.checked; zoomed(); }
    else if (k >= "1" && k <= String(reasons.length)) reasons[+k - 1].checked = true;
    else if (e.key === "ArrowRight") { e.preventDefault(); show(pos + 1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); show(pos - 1); }
    else if (e.key === " ") { e.preventDefault(); play(); }
  });
})();
