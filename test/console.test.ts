/**
 * The game-day console in a real browser (Debian's chromium through playwright-core) against a
 * real `firedrill server` process and real agent processes: log in, the fleet, a run started from
 * the form whose timeline and stop-condition chart grow live, HALT reverting the burn on the agent,
 * a viewer's refusals surfaced, the exported report opened offline, keyboard-only HALT, and every
 * page visited with no console error. Screenshots: test-artifacts/console/<test>-<page>.png.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Browser, BrowserContextOptions, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { healthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import type { HealthEndpoint } from "../packages/control-plane/src/test-support/health-endpoint.js";
import { api, createToken } from "./support/api.js";
import { BrowserWatch, chromiumMissing, launchChromium } from "./support/browser.js";
import { burnerThreads } from "./support/cpu.js";
import { fakeInstance } from "./support/fake-aws.js";
import { FAKE_AWS_ENV, startFakeAwsProcess } from "./support/fake-aws-process.js";
import { killAll, startAgentProcess, startServer, tempDir, waitFor } from "./support/processes.js";
import type { ServerHandle, TestProcess } from "./support/processes.js";

const missing = chromiumMissing();
if (missing) console.log(`skipping the console's browser tests: ${missing}`);

/** Every wait in a page is bounded by this (ms). */
const WAIT = 20_000;
const VIEWER = "dana";
const HALT_REASON = "game day over: the checkout team called it";

function experiment(healthUrl: string, name = "console-burn"): string {
  return `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: ${name}
spec:
  hypothesis: "web keeps answering while its host burns CPU"
  targets:
    web:
      selector: { labels: { app: web } }
      mode: { all: true }
  steps:
    - { name: burn, fault: cpu-burn, target: web, params: { load: 5, cores: 1 }, duration: 2m }
  stopConditions:
    - { http: { url: "${healthUrl}", intervalMs: 250, failuresToAbort: 1000 } }
`;
}

describe.skipIf(missing !== undefined)("the console in a real browser", () => {
  const cp = tempDir("console-cp");
  const webState = tempDir("console-web");
  const dbState = tempDir("console-db");
  const downloads = tempDir("console-downloads");
  let server: ServerHandle;
  let web: TestProcess;
  let webId: string;
  let dbId: string;
  let browser: Browser;
  let health: HealthEndpoint;
  let viewerToken: string;
  /** The admin's logged-in browser state (its session cookie), from the login test. */
  let adminState: Exclude<BrowserContextOptions["storageState"], undefined>;
  /** The run started from the form (test 3), halted in test 4, reported in test 6. */
  let runId: string;
  let watch: BrowserWatch;

  beforeAll(async () => {
    // A fake AWS with one Auto Scaling group of one instance: a finding for the SPOF page.
    const aws = await startFakeAwsProcess({ statePath: join(cp.path, "fake-aws.json") });
    await aws.setState({
      instances: { "i-0c0ffee000000001": fakeInstance("i-0c0ffee000000001", { region: "eu-west-1", group: "checkout-asg" }) },
      groups: { "eu-west-1/checkout-asg": { name: "checkout-asg", region: "eu-west-1", minSize: 1, maxSize: 1, desiredCapacity: 1, availabilityZones: ["eu-west-1a"], tags: {} } },
    });
    server = await startServer({ dataDir: join(cp.path, "cp"), extraArgs: ["--revert-wait", "10s", "--aws-endpoint", aws.url], env: FAKE_AWS_ENV });
    web = startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: webState.path, labels: "app=web,firedrill:opt-in=true" });
    startAgentProcess({ server: server.grpcAddr, token: server.joinToken, stateDir: dbState.path, labels: "app=db,firedrill:opt-in=true" });
    await waitFor("both agents connected", async () => (await api(server, "GET", "/api/v1/agents?connected=true")).body.agents.length === 2, 30_000);
    webId = readFileSync(join(webState.path, "agent-id"), "utf8").trim();
    dbId = readFileSync(join(dbState.path, "agent-id"), "utf8").trim();
    viewerToken = await createToken(server, { name: VIEWER, role: "viewer" });
    health = await healthEndpoint();
    browser = await launchChromium();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await health?.close();
    await killAll();
    for (const d of [cp, webState, dbState, downloads]) d.cleanup();
  });

  afterEach(async (context) => {
    // What a failed test left: no halt, no fault on either host (the API's own stop-all). A test
    // that passed leaves its run to the next (the run test's burn is what the halt test halts).
    if (server && context.task.result?.state === "fail") {
      await api(server, "DELETE", "/api/v1/halt");
      for (const id of [webId, dbId]) if (id) await api(server, "DELETE", `/api/v1/agents/${id}/faults`);
    }
    await watch?.finish();
  });

  const url = (hash = "") => `${server.httpUrl}/${hash}`;
  const poll = <T>(fn: () => T | Promise<T>) => expect.poll(fn, { timeout: WAIT, interval: 200 });
  /** A page logged in as the admin (from the session the login test made). */
  const adminPage = async (hash: string): Promise<Page> => {
    const { page } = await watch.open({ storageState: adminState });
    await page.goto(url(hash));
    await page.locator("[data-testid=whoami]").waitFor({ timeout: WAIT });
    return page;
  };
  const runFaults = async (id: string) => (await api(server, "GET", `/api/v1/faults?state=all&runId=${id}`)).body.faults as any[];
  const runState = async (id: string) => (await api(server, "GET", `/api/v1/runs/${id}`)).body.run.state as string;
  /** Logs in through the form. */
  const logIn = async (page: Page, token: string) => {
    await page.goto(url());
    const form = page.locator("form[data-testid=login]");
    await form.waitFor({ timeout: WAIT });
    await page.getByLabel("API token").fill(token);
    await form.getByRole("button", { name: "Log in" }).click();
    await page.locator("[data-testid=whoami]").waitFor({ timeout: WAIT });
  };

  it("logs in with the admin token through the form; the session cookie is HttpOnly and SameSite=Strict", async () => {
    watch = new BrowserWatch(browser, "login");
    // A wrong token is refused (401); the page's first "who am I" is answered 200 with no caller.
    watch.allowHttpError(401, "/console/api/login");
    const { context, page } = await watch.open();
    await page.goto(url());
    const form = page.locator("form[data-testid=login]");
    await form.waitFor({ timeout: WAIT });
    const input = page.getByLabel("API token");
    expect(await input.getAttribute("type")).toBe("password");
    expect(await input.getAttribute("name")).toBe("token");
    await watch.screenshot(page, "form");

    await input.fill("fdt_not.a-real-token");
    await form.getByRole("button", { name: "Log in" }).click();
    const error = page.locator("[data-testid=error]");
    await error.waitFor({ timeout: WAIT });
    expect(await error.getAttribute("role")).toBe("alert");
    expect((await error.textContent())?.trim()).not.toBe("");
    expect(await context.cookies()).toEqual([]);

    await input.fill(server.adminToken);
    await form.getByRole("button", { name: "Log in" }).click();
    await poll(() => page.locator("[data-testid=whoami]").textContent()).toMatch(/admin \(admin\)/);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "firedrill_session");
    expect(session, JSON.stringify(cookies)).toBeDefined();
    expect(session).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" });
    expect(session!.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The page's scripts cannot read it.
    expect(await page.evaluate<string>("document.cookie")).not.toContain("firedrill_session");
    await watch.screenshot(page, "fleet");
    adminState = await context.storageState();
  });

  it("the fleet shows both agents connected with their labels; the label filter narrows the list", async () => {
    watch = new BrowserWatch(browser, "fleet");
    const page = await adminPage("#/fleet");
    const table = page.locator("table[data-testid=agents]");
    const webRow = table.locator(`tr[data-agent-id="${webId}"]`);
    const dbRow = table.locator(`tr[data-agent-id="${dbId}"]`);
    await webRow.waitFor({ timeout: WAIT });
    await dbRow.waitFor({ timeout: WAIT });
    await poll(() => webRow.locator("[data-testid=agent-state]").textContent()).toMatch(/connected/);
    expect(await webRow.locator("[data-testid=agent-state]").textContent()).not.toMatch(/disconnected/);
    expect(await webRow.textContent()).toMatch(/app\s*[=:]\s*web/);
    expect(await dbRow.textContent()).toMatch(/app\s*[=:]\s*db/);
    expect(await webRow.textContent()).toContain("cpu-burn");

    const selector = page.locator("input[name=selector]");
    await selector.fill("app=web");
    await selector.press("Enter");
    await dbRow.waitFor({ state: "detached", timeout: WAIT });
    await webRow.waitFor({ timeout: WAIT });
    await watch.screenshot(page, "filtered-web");
    await selector.fill("app=db");
    await selector.press("Enter");
    await webRow.waitFor({ state: "detached", timeout: WAIT });
    await dbRow.waitFor({ timeout: WAIT });
    await selector.fill("");
    await selector.press("Enter");
    await webRow.waitFor({ timeout: WAIT });
    await dbRow.waitFor({ timeout: WAIT });
  });

  it("a run started from the form: the burn runs on the agent; the timeline and the stop-condition chart grow live", async () => {
    watch = new BrowserWatch(browser, "run");
    const page = await adminPage("#/runs");
    await page.locator("textarea[name=spec]").fill(experiment(health.url));
    await watch.screenshot(page, "form");
    await page.locator("button[data-testid=start-run]").click();
    await poll(() => /#\/runs\/([^/]+)$/.exec(page.url())?.[1]).toBeTruthy();
    runId = /#\/runs\/([^/]+)$/.exec(page.url())![1]!;
    expect((await api(server, "GET", `/api/v1/runs/${runId}`)).body.run.actor).toBe("admin");

    // The burn is real: its burner thread runs in the web agent.
    await waitFor("the burner thread on the web agent", () => burnerThreads(web.pid).length === 1, WAIT);
    await poll(() => page.locator("[data-testid=run-state]").textContent()).toMatch(/running/);
    await page.locator('[data-testid=dag] [data-step="burn"][data-state="running"]').waitFor({ timeout: WAIT });
    await page.locator("table[data-testid=targets] tr[data-fault-id][data-state=running]").waitFor({ timeout: WAIT });
    const condition = page.locator("[data-testid=stop-condition]");
    await poll(() => condition.count()).toBe(1);
    await poll(() => condition.getAttribute("data-state")).toBe("healthy");

    // Live, not on reload: a marker the page would lose on a reload, and events and samples that
    // arrive after this point.
    await page.evaluate("window.__noReload = true");
    const timeline = page.locator("ol[data-testid=timeline] li[data-event-id]");
    await poll(() => timeline.count()).toBeGreaterThan(0);
    const seen = new Set(await timeline.evaluateAll((els) => els.map((e) => e.getAttribute("data-event-id"))));
    const chart = page.locator("[data-testid=sc-chart]");
    const samplesAt = async () => Number(await chart.getAttribute("data-samples"));
    const samplesBefore = await samplesAt();
    await poll(samplesAt).toBeGreaterThan(samplesBefore + 2);

    // Break the endpoint until the page shows the condition unhealthy, then mend it: each turn is
    // a new timeline event.
    health.setStatus(500);
    await poll(() => condition.getAttribute("data-state")).toBe("unhealthy");
    health.setStatus(200);
    await poll(() => condition.getAttribute("data-state")).toBe("healthy");
    await poll(async () => (await timeline.evaluateAll((els) => els.map((e) => e.getAttribute("data-event-id")))).filter((id) => !seen.has(id)).length).toBeGreaterThanOrEqual(2);
    for (const time of await timeline.evaluateAll((els) => els.map((e) => e.getAttribute("data-time")))) expect(Number(time)).toBeGreaterThan(1_600_000_000_000);
    expect(await page.evaluate<boolean | undefined>("window.__noReload")).toBe(true);
    await watch.screenshot(page, "live");
  });

  it("HALT (reason typed) reverts the burn on the agent; the banner says who and why; the admin lifts it", async () => {
    watch = new BrowserWatch(browser, "halt");
    expect(runId, "the run of the previous test").toBeTruthy();
    expect(burnerThreads(web.pid)).toHaveLength(1);
    const page = await adminPage(`#/runs/${runId}`);
    await page.locator("button[data-testid=halt]").click();
    const dialog = page.locator("dialog[data-testid=halt-dialog]");
    await dialog.waitFor({ timeout: WAIT });
    await dialog.locator("textarea[name=reason]").fill(HALT_REASON);
    await watch.screenshot(page, "dialog");
    await dialog.locator("button[data-testid=halt-confirm]").click();

    // On the system: the burner thread is gone from the agent; the store agrees.
    await waitFor("the burner thread to be gone", () => burnerThreads(web.pid).length === 0, WAIT);
    await waitFor("the run's faults reverted by the halt", async () => {
      const faults = await runFaults(runId);
      return faults.length > 0 && faults.every((f) => f.state === "reverted" && f.reason === "halt");
    }, WAIT);
    expect((await api(server, "GET", `/api/v1/agents/${webId}/faults?state=active`)).body.faults).toEqual([]);

    const banner = page.locator("[data-testid=halt-banner]");
    await banner.waitFor({ timeout: WAIT });
    expect(await banner.getAttribute("role")).toBe("alert");
    expect(await banner.textContent()).toMatch(new RegExp(`HALTED by admin since .+: ${HALT_REASON}`));
    await poll(() => page.locator("[data-testid=run-state]").textContent()).toMatch(/aborted/);
    await watch.screenshot(page, "halted");
    // The banner is on every page.
    await page.goto(url("#/fleet"));
    await banner.waitFor({ timeout: WAIT });

    await page.locator("button[data-testid=unhalt]").click();
    await banner.waitFor({ state: "detached", timeout: WAIT });
    expect((await api(server, "GET", "/api/v1/halt")).body.halt).toBeNull();
    // Gone for good.
    expect(burnerThreads(web.pid)).toEqual([]);
  });

  it("a viewer: ABORT and Start run show the 403 and change nothing; the viewer can halt", async () => {
    watch = new BrowserWatch(browser, "viewer");
    const started = await api(server, "POST", "/api/v1/runs", { spec: experiment(health.url, "viewer-watch") });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const id = started.body.run.id as string;
    await waitFor("the burner thread on the web agent", () => burnerThreads(web.pid).length === 1, WAIT);
    watch.allowHttpError(403, `/api/v1/runs/${id}/abort`);
    watch.allowHttpError(403, "/api/v1/runs");

    const { page } = await watch.open();
    await logIn(page, viewerToken);
    expect(await page.locator("[data-testid=whoami]").textContent()).toMatch(new RegExp(`${VIEWER} \\(viewer\\)`));
    await page.goto(url(`#/runs/${id}`));
    await poll(() => page.locator("[data-testid=run-state]").textContent()).toMatch(/running/);

    // ABORT is there for every role; the server refuses it and the page says so.
    await page.locator("button[data-testid=abort]").click();
    const dialog = page.locator("dialog[data-testid=abort-dialog]");
    await dialog.waitFor({ timeout: WAIT });
    await dialog.locator("textarea[name=reason]").fill("a viewer tries");
    await dialog.locator("button[data-testid=abort-confirm]").click();
    const error = page.locator("[data-testid=error]");
    // The server's 403 names the route: /api/v1/runs/:id/abort.
    await poll(() => error.textContent()).toMatch(new RegExp(`${VIEWER} \\(viewer\\) may not POST /api/v1/runs/(:id|${id})/abort: it needs the run:write permission`));
    expect(await error.getAttribute("role")).toBe("alert");
    await watch.screenshot(page, "abort-refused");
    expect(await runState(id)).toBe("running");
    expect(burnerThreads(web.pid)).toHaveLength(1);

    await page.goto(url("#/runs"));
    await page.locator("textarea[name=spec]").fill(experiment(health.url, "viewer-try"));
    await page.locator("button[data-testid=start-run]").click();
    await poll(() => page.locator("[data-testid=error]").textContent()).toMatch(new RegExp(`${VIEWER} \\(viewer\\) may not POST /api/v1/runs: it needs the run:write permission`));
    await watch.screenshot(page, "start-refused");
    expect((await api(server, "GET", "/api/v1/runs?state=active")).body.runs.map((r: any) => r.id)).toEqual([id]);

    // Anyone who can see can stop: the viewer's HALT reverts the burn.
    await page.locator("button[data-testid=halt]").click();
    const halt = page.locator("dialog[data-testid=halt-dialog]");
    await halt.waitFor({ timeout: WAIT });
    await halt.locator("textarea[name=reason]").fill("viewer stops it");
    await halt.locator("button[data-testid=halt-confirm]").click();
    await waitFor("the burner thread to be gone", () => burnerThreads(web.pid).length === 0, WAIT);
    await poll(() => page.locator("[data-testid=halt-banner]").textContent()).toMatch(new RegExp(`HALTED by ${VIEWER} since .+: viewer stops it`));
    expect((await api(server, "GET", "/api/v1/halt")).body.halt).toMatchObject({ actor: VIEWER, reason: "viewer stops it" });
    await poll(() => runState(id)).toBe("aborted");
    await watch.screenshot(page, "halted");
    // The admin lifts it (the viewer may not); the viewer's page follows within its 2 s poll.
    expect((await api(server, "DELETE", "/api/v1/halt")).status).toBe(200);
    await page.locator("[data-testid=halt-banner]").waitFor({ state: "detached", timeout: WAIT });
  });

  it("the exported report opens from a file with all network blocked: verdict, one drawn chart per stop condition, the hosts", async () => {
    watch = new BrowserWatch(browser, "report");
    expect(runId, "the run of the run test").toBeTruthy();
    const page = await adminPage(`#/runs/${runId}`);
    const link = page.locator("a[data-testid=report-download]");
    expect(await link.getAttribute("href")).toBe(`/api/v1/runs/${runId}/report.html`);
    const [download] = await Promise.all([page.waitForEvent("download", { timeout: WAIT }), link.click()]);
    expect(download.suggestedFilename()).toBe(`firedrill-report-${runId}.html`);
    const file = join(downloads.path, download.suggestedFilename());
    await download.saveAs(file);
    const html = readFileSync(file, "utf8");
    expect(html).toContain('id="firedrill-report"');
    const { report } = (await api(server, "GET", `/api/v1/runs/${runId}/report`)).body;
    expect(report.stopConditions).toHaveLength(1);

    // Offline, and every request that is not the file itself is refused and counted.
    const { context, page: offline } = await watch.open({ offline: true });
    const network: string[] = [];
    await context.route("**/*", (route) => {
      const u = route.request().url();
      if (u.startsWith("file:")) return route.continue();
      network.push(u);
      return route.abort();
    });
    offline.on("request", (r) => {
      if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) network.push(r.url());
    });
    await offline.goto(pathToFileURL(file).href);
    const article = offline.locator("article.report[data-testid=report]");
    await article.waitFor({ timeout: WAIT });
    expect((await offline.locator("[data-testid=verdict]").textContent())?.toLowerCase()).toContain(String(report.verdict).toLowerCase());
    const charts = offline.locator("[data-testid=report-chart]");
    await poll(() => charts.count()).toBe(report.stopConditions.length);
    // Each chart's canvas has something drawn on it.
    const drawn = await charts.evaluateAll((els) =>
      els.map((el) => {
        const canvas = el.querySelector("canvas");
        if (!canvas || canvas.width === 0 || canvas.height === 0) return 0;
        const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) painted++;
        return painted;
      }),
    );
    for (const painted of drawn) expect(painted).toBeGreaterThan(100);
    const hosts = offline.locator("table[data-testid=report-hosts]");
    await hosts.waitFor({ timeout: WAIT });
    expect(await hosts.textContent()).toMatch(new RegExp(`${webId}|${report.hosts[0]?.hostname ?? webId}`));
    await watch.screenshot(offline, "offline");
    expect(network).toEqual([]);

    // The same report inside the console.
    await page.goto(url(`#/runs/${runId}/report`));
    await page.locator("article.report[data-testid=report]").waitFor({ timeout: WAIT });
    await poll(() => page.locator("[data-testid=report-chart]").count()).toBe(report.stopConditions.length);
  });

  it("keyboard only: one Tab from a fresh load reaches HALT, Enter opens its dialog", async () => {
    watch = new BrowserWatch(browser, "keyboard");
    const page = await adminPage("#/fleet");
    await page.locator("button[data-testid=halt]").waitFor({ timeout: WAIT });
    await page.keyboard.press("Tab");
    expect(await page.evaluate<string | null | undefined>('document.activeElement?.getAttribute("data-testid")')).toBe("halt");
    await page.keyboard.press("Enter");
    const dialog = page.locator("dialog[data-testid=halt-dialog]");
    await dialog.waitFor({ timeout: WAIT });
    expect(await dialog.evaluate((d) => (d as unknown as { open: boolean }).open)).toBe(true);
    await watch.screenshot(page, "halt-dialog");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden", timeout: WAIT });
    expect((await api(server, "GET", "/api/v1/halt")).body.halt).toBeNull();
  });

  it("every page renders with no console error (a screenshot of each)", async () => {
    watch = new BrowserWatch(browser, "page");
    const schedule = await api(server, "POST", "/api/v1/schedules", { kind: "experiment", spec: experiment(health.url, "new-year"), cron: "0 3 1 1 *", tz: "UTC", name: "new-year-burn" });
    expect(schedule.status, JSON.stringify(schedule.body)).toBe(201);
    const scheduleId = schedule.body.schedule.id as string;

    const page = await adminPage("#/fleet");
    await page.locator(`table[data-testid=agents] tr[data-agent-id="${webId}"]`).waitFor({ timeout: WAIT });
    await watch.screenshot(page, "fleet");

    await page.goto(url(`#/fleet/${webId}`));
    await poll(() => page.locator("[data-testid=measurement-chart]").count()).toBeGreaterThan(0);
    await watch.screenshot(page, "host");

    await page.goto(url("#/runs"));
    await page.locator(`table[data-testid=runs] tr[data-run-id="${runId}"]`).waitFor({ timeout: WAIT });
    await watch.screenshot(page, "runs");

    await page.goto(url(`#/runs/${runId}`));
    await poll(() => page.locator("[data-testid=run-state]").textContent()).toMatch(/aborted/);
    await page.locator("[data-testid=sc-chart]").waitFor({ timeout: WAIT });
    await watch.screenshot(page, "run");

    await page.goto(url(`#/runs/${runId}/report`));
    await page.locator("article.report[data-testid=report] [data-testid=verdict]").waitFor({ timeout: WAIT });
    await watch.screenshot(page, "report");

    await page.goto(url("#/schedules"));
    const row = page.locator(`table[data-testid=schedules] tr[data-schedule-id="${scheduleId}"]`);
    await row.waitFor({ timeout: WAIT });
    await row.locator("button[data-testid=pause]").click();
    await row.locator("button[data-testid=resume]").waitFor({ timeout: WAIT });
    await poll(async () => (await api(server, "GET", `/api/v1/schedules/${scheduleId}`)).body.schedule.state).toBe("paused");
    await watch.screenshot(page, "schedules");
    await row.locator("button[data-testid=resume]").click();
    await row.locator("button[data-testid=pause]").waitFor({ timeout: WAIT });
    await poll(async () => (await api(server, "GET", `/api/v1/schedules/${scheduleId}`)).body.schedule.state).toBe("active");

    await page.goto(url("#/spof"));
    await poll(() => page.locator("[data-testid=spof]").textContent()).toContain("checkout-asg");
    await watch.screenshot(page, "spof");

    await page.goto(url("#/audit"));
    await poll(() => page.locator("table[data-testid=audit] tr").count()).toBeGreaterThan(1);
    await watch.screenshot(page, "audit");
  });
});
