// Opens the page of a running `mnist-mlp serve` in headless Chromium, draws a digit with the
// mouse, and checks what the page shows: ten bars summing to 100%, three highlighted, and the
// top-1 named above them being the largest bar and the digit drawn.
//
//   node tests/browser/draw.mjs http://127.0.0.1:PORT [screenshot.png]
import { chromium } from "playwright-core";

const base = process.argv[2];
const shot = process.argv[3];
if (!base) {
  console.error("usage: node draw.mjs BASE_URL [screenshot.png]");
  process.exit(2);
}
let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  await page.goto(base);
  check((await page.locator(".bar").count()) === 10, "the page shows ten probability bars");

  // A "7": a top stroke left to right, then a diagonal down to the lower left.
  const box = await page.locator("#pad").boundingBox();
  const points = [[70, 60], [210, 60], [190, 110], [160, 170], [130, 235]];
  await page.mouse.move(box.x + points[0][0], box.y + points[0][1]);
  await page.mouse.down();
  for (const [x, y] of points.slice(1)) {
    await page.mouse.move(box.x + x, box.y + y, { steps: 12 });
  }
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector("#top").dataset.digit !== undefined, null, { timeout: 10000 });
  await page.waitForTimeout(400); // let the last debounced request land

  const state = await page.evaluate(() => {
    const bars = [...document.querySelectorAll(".bar")].map(b => ({
      digit: Number(b.dataset.digit),
      p: parseFloat(b.querySelector(".p").textContent),
      top: b.classList.contains("top"),
      top1: b.classList.contains("top1"),
      drawn: b.querySelector(".fill").getBoundingClientRect().width / b.querySelector(".track").getBoundingClientRect().width,
    }));
    return { bars, shown: Number(document.querySelector("#top").dataset.digit), text: document.querySelector("#top").textContent };
  });
  const sum = state.bars.reduce((s, b) => s + b.p, 0);
  const best = state.bars.reduce((a, b) => (b.p > a.p ? b : a));
  console.log(`page says: "${state.text}"; bars: ${state.bars.map(b => `${b.digit}:${b.p}%`).join(" ")}`);
  check(Math.abs(sum - 100) < 1.5, `the bars sum to 100% (${sum.toFixed(1)}%)`);
  check(state.bars.filter(b => b.top).length === 3, "three bars are highlighted as the top-3");
  check(state.bars.find(b => b.top1)?.digit === best.digit, "the top-1 bar is the largest");
  check(state.shown === best.digit, `the digit named above the bars (${state.shown}) is the largest bar`);
  check(state.shown === 7, `the network reads the drawn 7 as ${state.shown}`);
  const top1 = state.bars.find(b => b.top1);
  check(top1 && Math.abs(100 * top1.drawn - top1.p) < 2, `the top-1 bar is drawn at its probability (${top1 ? (100 * top1.drawn).toFixed(1) : "?"}% of its track)`);
  const seenInk = await page.evaluate(() => {
    const d = document.getElementById("seen").getContext("2d").getImageData(0, 0, 28, 28).data;
    let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]; return s;
  });
  check(seenInk > 0, "the 28×28 view shows what the network saw");
  if (shot) await page.screenshot({ path: shot });

  await page.click("#clear");
  const cleared = await page.evaluate(() => [...document.querySelectorAll(".bar .p")].every(p => p.textContent === "–"));
  check(cleared, "Clear resets the bars");
} finally {
  await browser.close();
}
console.log(`${9 - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
