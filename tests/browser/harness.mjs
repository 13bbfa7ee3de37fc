// What every browser test here shares: its arguments (the page's base URL and where to put a
// screenshot), headless Chromium started with the flags this machine needs, a `check` that
// prints one line per check, and the closing "N passed, M failed" line and exit code.
import { chromium } from "playwright-core";

export async function runChecks(name, body) {
  const base = process.argv[2];
  const shot = process.argv[3];
  if (!base) {
    console.error(`usage: node ${name} BASE_URL [screenshot.png]`);
    process.exit(2);
  }
  let failures = 0, checks = 0;
  const check = (ok, what) => {
    checks++;
    console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
    if (!ok) failures++;
  };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    await body({ browser, base, shot, check });
  } finally {
    await browser.close();
  }
  console.log(`${checks - failures} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
