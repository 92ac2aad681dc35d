/**
 * A real browser for the console's tests and benchmark: Debian's chromium (`/usr/bin/chromium`,
 * installed by scripts/setup.sh) driven by playwright-core (Playwright's own browser download is
 * not reachable here, and not used).
 *
 * {@link BrowserWatch} opens contexts and pages and watches everything they do: console errors
 * and warnings, uncaught page errors, failed requests and HTTP error answers. A test declares the
 * HTTP errors it provokes on purpose (a viewer's 403) with `allowHttpError`; anything else is a
 * problem, and `finish()` (run it in afterEach) closes every context the test opened and throws
 * listing them. Screenshots go to `test-artifacts/console/<test>-<page>.png` (gitignored).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { Browser, BrowserContext, BrowserContextOptions, Page } from "playwright-core";
import { ROOT } from "./processes.js";

/** Debian's chromium, as scripts/setup.sh installs it. */
export const CHROMIUM = "/usr/bin/chromium";

/** The flags the tests run chromium with (headless, no sandbox as root, nothing phoning home). */
export const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--no-first-run",
];

/** Where screenshots are written. */
export const ARTIFACTS_DIR = join(ROOT, "test-artifacts/console");

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium with apt-get)`;
}

/** Launches chromium (headless). Close it in afterAll: `await browser?.close()`. */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** An HTTP error answer a test provokes on purpose: its status, and the request path it is for. */
interface AllowedHttpError {
  status: number;
  path: RegExp;
}

/** What Chrome logs to the console for an HTTP error answer (the answer itself is checked instead). */
const HTTP_ERROR_LOG = /^Failed to load resource: the server responded with a status of (\d+)/;

/**
 * The contexts and pages of one test, watched. Make one per test (`new BrowserWatch(browser,
 * "login")`) and `await watch.finish()` in afterEach.
 */
export class BrowserWatch {
  /** What went wrong, in order: one line each. */
  readonly problems: string[] = [];
  private readonly contexts: BrowserContext[] = [];
  private readonly allowed: AllowedHttpError[] = [];

  constructor(
    readonly browser: Browser,
    /** Names the screenshots: `<test>-<page>.png`. */
    readonly test: string,
  ) {}

  /**
   * A new context (its own cookies) with one page, both watched. `baseURL` is the console's
   * server; every wait and action is bounded at 20 s unless a call says otherwise.
   */
  async open(options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; page: Page }> {
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
    context.setDefaultTimeout(20_000);
    context.setDefaultNavigationTimeout(20_000);
    this.contexts.push(context);
    context.on("page", (p) => this.watch(p));
    const page = await context.newPage();
    return { context, page };
  }

  /** Allows HTTP answers with `status` to requests whose path matches `path` (a provoked refusal). */
  allowHttpError(status: number, path: RegExp | string): void {
    this.allowed.push({ status, path: typeof path === "string" ? new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) : path });
  }

  /** Writes a full-page screenshot of `page` to `test-artifacts/console/<test>-<name>.png`. */
  async screenshot(page: Page, name: string): Promise<string> {
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    const path = join(ARTIFACTS_DIR, `${this.test}-${name}.png`);
    await page.screenshot({ path, fullPage: true, timeout: 20_000 });
    return path;
  }

  /** Closes every context this test opened; then throws when anything went wrong in them. */
  async finish(): Promise<void> {
    await Promise.allSettled(this.contexts.map((c) => c.close()));
    this.contexts.length = 0;
    if (this.problems.length > 0) {
      throw new Error(`the browser saw ${this.problems.length} problem(s) in test "${this.test}":\n  ${this.problems.join("\n  ")}`);
    }
  }

  private watch(page: Page): void {
    page.on("console", (message) => {
      const type = message.type();
      if (type !== "error" && type !== "warning") return;
      // An HTTP error answer is logged by Chrome too: judged by its response below instead.
      if (HTTP_ERROR_LOG.test(message.text())) return;
      const where = message.location().url;
      this.problems.push(`console ${type}: ${message.text()}${where ? ` (at ${where})` : ""}`);
    });
    page.on("pageerror", (err) => this.problems.push(`page error: ${err.stack ?? err.message}`));
    page.on("requestfailed", (request) => {
      const failure = request.failure()?.errorText ?? "failed";
      // The page closing its own event stream (leaving a run page, or closing) cancels it: not a failure.
      if (failure === "net::ERR_ABORTED" && request.resourceType() === "eventsource") return;
      this.problems.push(`request failed: ${request.method()} ${request.url()}: ${failure}`);
    });
    page.on("response", (response) => {
      const status = response.status();
      if (status < 400) return;
      const url = new URL(response.url());
      if (this.allowed.some((a) => a.status === status && a.path.test(url.pathname))) return;
      this.problems.push(`HTTP ${status} for ${response.request().method()} ${url.pathname}${url.search}`);
    });
  }
}
