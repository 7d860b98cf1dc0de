// The end of the queue: U undoes the last decision.
document.addEventListener("keydown", e => {
  if (e.repeat || e.ctrlKey || e.metaKey || e.altKey || e.key.toLowerCase() !== "u") return;
  const b = document.getElementById("undo");
  if (b) b.click();
});
