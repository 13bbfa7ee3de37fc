// Opens the live page of `mnist-mlp train --watch` in headless Chromium while the run trains,
// and checks from the DOM that the learning curves and the first layer's weight grid update at
// least twice while it runs. Takes a screenshot at the end.
//
//   node tests/browser/watch.mjs http://127.0.0.1:PORT [screenshot.png]
import { runChecks } from "./harness.mjs";

await runChecks("watch.mjs", async ({ browser, base, shot, check }) => {
  const page = await browser.newPage({ viewport: { width: 1250, height: 1000 } });
  await page.goto(base);
  // Record, once a second for up to 60 s, how many evaluations the curves hold and which
  // version of the weight grid is drawn, until both changed at least twice.
  const points = new Set(), versions = new Set();
  for (let i = 0; i < 60; i++) {
    points.add(await page.locator("#points").getAttribute("data-count"));
    versions.add(await page.locator("#weights").getAttribute("data-version"));
    if (points.size >= 3 && versions.size >= 3) break;
    await page.waitForTimeout(1000);
  }
  const pts = [...points].map(Number).filter(n => n > 0);
  check(pts.length >= 2, `the curves grew while the run trained (evaluations seen: ${[...points].join(", ")})`);
  check([...versions].filter(v => v !== "0").length >= 2,
        `the weight grid was redrawn with new weights at least twice (versions seen: ${[...versions].join(", ")})`);
  const curvePoints = Number(await page.locator("#loss").getAttribute("data-points"));
  check(curvePoints >= 2, `the loss chart draws points (${curvePoints})`);
  const layerPoints = Number(await page.locator("#grad").getAttribute("data-points"));
  check(layerPoints >= 2, `the per-layer gradient-norm chart draws points (${layerPoints})`);
  const digits = await page.locator("#digits .digit").count();
  check(digits === 20, `the page shows predictions on 20 test digits (${digits})`);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
});
