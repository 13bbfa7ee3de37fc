// Opens the page of a running `mnist-mlp serve` in headless Chromium, draws a digit with the
// mouse, and checks what the page shows: ten bars summing to 100%, three highlighted, and the
// top-1 named above them being the largest bar and the digit drawn. Then uploads a picture of
// a digit on paper with the page's button, and drops one on the drawing area, and checks that
// the prediction and the 28×28 view of what the network saw appear. The screenshot is taken
// after the upload.
//
//   node tests/browser/draw.mjs http://127.0.0.1:PORT [screenshot.png]
import { runChecks } from "./harness.mjs";

await runChecks("draw.mjs", async ({ browser, base, shot, check }) => {
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

  await page.click("#clear");
  const cleared = await page.evaluate(() => [...document.querySelectorAll(".bar .p")].every(p => p.textContent === "–"));
  check(cleared, "Clear resets the bars");

  // Pictures of a "7" drawn in the page's canvas (so no file ships with the test): a clean one,
  // a dark marker on white paper as a PNG; and a photo-like one, grey paper lit from one side,
  // a blue pen, off centre, as a JPEG.
  const picture = async (kind) => Buffer.from(await page.evaluate(async (kind) => {
    const c = new OffscreenCanvas(640, 480);
    const g = c.getContext("2d");
    if (kind === "clean") {
      g.fillStyle = "#fbfbfb"; g.fillRect(0, 0, 640, 480);
      g.strokeStyle = "#111"; g.lineWidth = 34;
      g.lineCap = "round"; g.lineJoin = "round";
      g.beginPath(); g.moveTo(230, 110); g.lineTo(420, 110); g.lineTo(300, 390); g.stroke();
    } else {
      const light = g.createLinearGradient(0, 0, 640, 480);
      light.addColorStop(0, "#d9d6cf"); light.addColorStop(1, "#a9a69f");
      g.fillStyle = light; g.fillRect(0, 0, 640, 480);
      g.strokeStyle = "#1c2340"; g.lineWidth = 22; g.lineCap = "round"; g.lineJoin = "round";
      g.beginPath(); g.moveTo(250, 120); g.lineTo(420, 120); g.lineTo(330, 380); g.stroke();
    }
    const blob = await c.convertToBlob(kind === "clean" ? { type: "image/png" } : { type: "image/jpeg", quality: 0.85 });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let bin = ""; for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }, kind), "base64");

  async function uploaded() {
    await page.waitForFunction(() => document.querySelector("#source").dataset.file !== undefined, null, { timeout: 10000 });
    return page.evaluate(() => {
      const d = document.getElementById("seen").getContext("2d").getImageData(0, 0, 28, 28).data;
      let lit = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] > 127) lit++;
      const ps = [...document.querySelectorAll(".bar .p")].map(p => parseFloat(p.textContent));
      return { lit, sum: ps.reduce((a, b) => a + b, 0), digit: document.querySelector("#top").dataset.digit,
               text: document.querySelector("#top").textContent, source: document.querySelector("#source").textContent };
    });
  }

  await page.setInputFiles("#file", { name: "seven.png", mimeType: "image/png", buffer: await picture("clean") });
  let up = await uploaded();
  console.log(`after the upload the page says: "${up.text}"; "${up.source}"; ${up.lit} of 784 pixels lit in the 28×28 view`);
  check(up.source.includes("seven.png"), "the page names the uploaded picture");
  check(up.lit > 20 && up.lit < 400, `the 28×28 view shows the prepared digit (${up.lit} pixels lit)`);
  check(up.digit !== undefined && Math.abs(up.sum - 100) < 1.5, `a prediction is shown for the upload (bars sum to ${up.sum.toFixed(1)}%)`);
  check(up.digit === "7", `the network reads the uploaded 7 as ${up.digit}`);
  await page.waitForTimeout(400); // let the bars' width transition end
  const bar7 = await page.evaluate(() => {
    const b = document.querySelector('.bar[data-digit="7"]');
    return { p: parseFloat(b.querySelector(".p").textContent),
             drawn: b.querySelector(".fill").getBoundingClientRect().width / b.querySelector(".track").getBoundingClientRect().width };
  });
  check(Math.abs(100 * bar7.drawn - bar7.p) < 2, `the bar of the upload's 7 is drawn at its probability (${(100 * bar7.drawn).toFixed(1)}% for ${bar7.p}%)`);
  if (shot) await page.screenshot({ path: shot });

  // The photo-like picture dropped on the drawing area. How well photos are read is the
  // preparation's business (tests/predict.rs); here, that the page shows what came back.
  await page.click("#clear");
  await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), ch => ch.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "seven-on-paper.jpg", { type: "image/jpeg" }));
    document.getElementById("pad").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, (await picture("photo")).toString("base64"));
  up = await uploaded();
  console.log(`after the drop the page says: "${up.text}"; "${up.source}"; ${up.lit} of 784 pixels lit in the 28×28 view`);
  check(up.source.includes("seven-on-paper.jpg") && up.lit > 0 && up.digit !== undefined,
        `a picture dropped on the pad is sent, its 28×28 view and prediction shown (read as ${up.digit})`);

  // Something that is not a picture: the server's error is shown, the page stays usable.
  await page.click("#clear");
  await page.setInputFiles("#file", { name: "notes.jpg", mimeType: "image/jpeg", buffer: Buffer.from("not a picture at all") });
  await page.waitForFunction(() => document.querySelector("#status").textContent !== "", null, { timeout: 10000 });
  const err = await page.evaluate(() => document.querySelector("#status").textContent);
  check(err.includes("notes.jpg"), `a file that is not a picture is refused with the server's reason ("${err}")`);
});
