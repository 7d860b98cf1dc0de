// The Runs pages of a run in flight redraw themselves: every few seconds the page is fetched again and its #live
// part swapped in, only while an element with data-state="running" is on the page (the server drops it once the
// run has ended, and this stops). A file, not inline script: the CSP allows only this server's scripts.
(() => {
  const EVERY_MS = 3000;
  const running = () => document.querySelector('[data-state="running"]') !== null;
  const tick = async () => {
    if (!running()) return;
    try {
      const r = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      const fresh = new DOMParser().parseFromString(await r.text(), "text/html").getElementById("live");
      const old = document.getElementById("live");
      if (!r.ok || r.redirected || !fresh || !old) {
        location.reload(); // signed out, or the run is gone: show what the server says now
        return;
      }
      old.replaceWith(fresh);
    } catch (e) {
      // the server is restarting or the network blinked: try again at the next tick
    }
    setTimeout(tick, EVERY_MS);
  };
  setTimeout(tick, EVERY_MS);
})();
