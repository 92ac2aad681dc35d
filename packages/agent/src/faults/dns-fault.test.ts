import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createSocket } from "node:dgram";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject } from "@firedrill/protocol";
import { InvalidFaultRequestError } from "@firedrill/protocol";
import pino from "pino";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { buildQuery } from "../testing/dns-query.js";
import { createDnsFault, parseResolvConf } from "./dns-fault.js";
import type { DnsFaultOptions } from "./dns-fault.js";
import type { CommandRunner } from "./net-common.js";
import type { FaultContext, HostInfo, RunningFault } from "./types.js";

const log = pino({ level: "silent" });
const dir = mkdtempSync(join(tmpdir(), "firedrill-dns-fault-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function resolvConf(text: string): string {
  const path = join(dir, `resolv-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(path, text);
  return path;
}

const host: HostInfo = {
  cpuCount: 2,
  stateDir: "/tmp",
  protectedPids: () => [process.pid],
  networkExclusions: [
    { cidr: "10.213.254.2/32", port: 7443, reason: "the control plane (cp.example.internal:7443)" },
    { cidr: "169.254.169.254/32", reason: "EC2 instance metadata (IMDS)" },
    { cidr: "0.0.0.0/0", port: 53, reason: "DNS" },
    { cidr: "::/0", port: 53, reason: "DNS" },
    { cidr: "192.168.0.0/16", reason: "management (--management 192.168.0.0/16)" },
  ],
  controlPlaneHost: "CP.example.internal",
};

/** nft as a fake: remembers what it was given; `list tables` shows the table once loaded. */
function fakeNft(opts: { failLoad?: string; existing?: boolean } = {}) {
  const calls: string[] = [];
  let table = opts.existing === true;
  const run: CommandRunner = async (program, args, o) => {
    calls.push([program, ...args].join(" ") + (o?.input ? `\n${o.input}` : ""));
    if (args.join(" ") === "-j list tables") {
      return { code: 0, stdout: JSON.stringify({ nftables: table ? [{ table: { family: "inet", name: "firedrill_dns", handle: 7 } }] : [] }), stderr: "" };
    }
    if (args[0] === "-f") {
      if (opts.failLoad) return { code: 1, stdout: "", stderr: opts.failLoad };
      table = true;
      return { code: 0, stdout: "", stderr: "" };
    }
    if (args[0] === "delete") {
      table = false;
      return { code: 0, stdout: "", stderr: "" };
    }
    return { code: 1, stdout: "", stderr: "unexpected" };
  };
  return { run, calls, hasTable: () => table };
}

function kind(conf: string, nft: ReturnType<typeof fakeNft>, extra: DnsFaultOptions = {}) {
  return createDnsFault({ run: nft.run, resolvConfPath: conf, lookup: async () => ["10.213.254.2"], ...extra });
}

function makeCtx(): FaultContext & { records: JsonObject[] } {
  const records: JsonObject[] = [];
  return { faultId: "dns-test", log, host, records, updateRevert: (r) => records.push(JSON.parse(JSON.stringify(r)) as JsonObject) };
}

describe("dns-fault", () => {
  let running: RunningFault | undefined;
  afterEach(async () => {
    await running?.revert();
    running = undefined;
  });

  it("reads nameservers from resolv.conf", () => {
    expect(parseResolvConf("# x\nsearch example.internal\nnameserver 10.0.0.2\n  nameserver   fd00::53 \nnameserver\noptions timeout:1\n")).toEqual(["10.0.0.2", "fd00::53"]);
  });

  it("steers the first three resolvers outside the exclusions, and says what it leaves alone", () => {
    const conf = resolvConf("nameserver 10.0.0.2\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nnameserver 10.0.0.3\n");
    const plan = kind(conf, fakeNft()).validate({ domains: ["*.payments.internal"] }, host);
    expect(plan.resolvers).toEqual([{ address: "10.0.0.2", family: 4 }]);
    expect(plan.controlPlaneNames).toEqual(["cp.example.internal"]);
    expect(plan.details).toEqual([
      `acts on: *.payments.internal: NXDOMAIN, for the queries this host sends to its resolver 10.0.0.2 (udp, tcp; from ${conf})`,
      "forwarded to the resolver they were sent to: queries for every other name",
      "excluded: the control plane's name cp.example.internal — always forwarded",
      "left alone: resolver 192.168.1.1 (excluded: management (--management 192.168.0.0/16))",
      "left alone: nameserver fe80::1%eth0 (a link-local address with a zone)",
      `left alone: nameserver 10.0.0.3 (after the first 3 in ${conf}: the C library asks only those)`,
      "not steered: queries to DNS servers that are not the host's resolvers",
    ]);
  });

  it("refuses, naming the cause: no resolver to steer, an unreadable resolv.conf, the control plane's own name", () => {
    const refusal = (conf: string, params: JsonObject = {}) => {
      try {
        kind(conf, fakeNft()).validate(params, host);
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidFaultRequestError);
        return (err as Error).message;
      }
      return "accepted";
    };
    expect(refusal(resolvConf("search x\n"))).toMatch(/^resolvers: .+ lists no nameserver: dns-fault steers the queries this host sends to the resolvers listed there/);
    expect(refusal(join(dir, "missing.conf"))).toMatch(/^resolvers: cannot read .+missing\.conf \(ENOENT\)/);
    expect(refusal(resolvConf("nameserver 192.168.0.1\n"))).toMatch(/none of the nameservers in .+ can be steered \(resolver 192\.168\.0\.1 \(excluded: management \(--management 192\.168\.0\.0\/16\)\)\), so dns-fault would do nothing here$/);
    expect(refusal(resolvConf("nameserver 10.0.0.2\n"), { domains: ["cp.example.internal", "*.payments.internal"] })).toBe(
      "params.domains: cp.example.internal is the control plane's name: dns-fault always forwards its queries so that the agent keeps its link; leave it out",
    );
    expect(refusal(resolvConf("nameserver 10.0.0.2\n"), { mode: "REFUSED" })).toBe('params.mode: "REFUSED" is not allowed; use one of: NXDOMAIN, SERVFAIL, timeout');
  });

  it("journals the table before loading it, loads the responder's ports, measures, and on revert deletes the table then closes the responder", async () => {
    const nft = fakeNft();
    const k = kind(resolvConf("nameserver 127.0.0.1\n"), nft, { tcpForwardPorts: () => [61000, 61001] });
    const ctx = makeCtx();
    const plan = k.validate({ domains: ["*.payments.internal"], mode: "servfail" }, host);
    expect(k.planRevert(plan, ctx)).toEqual({ family: "inet", table: "firedrill_dns", created: false });
    running = await k.start(plan, ctx);
    expect(ctx.records).toEqual([
      { family: "inet", table: "firedrill_dns", created: true },
      { family: "inet", table: "firedrill_dns", created: true, handle: 7 },
    ]);
    const ruleset = nft.calls.find((c) => c.startsWith("nft -f -"))!;
    expect(ruleset).toContain("tcp sport 61000-61001 tcp dport 53 accept");
    const port = Number(/ip daddr 127\.0\.0\.1 udp dport 53 counter redirect to :(\d+)/.exec(ruleset)![1]);
    expect(running.details).toContain("excluded: the control plane's name cp.example.internal (10.213.254.2, resolved before the fault started) — always forwarded");

    // The listener the ruleset names answers: the fault for a match; the control plane's name never faulted.
    const ask = (name: string) =>
      new Promise<number | undefined>((resolve) => {
        const s = createSocket("udp4");
        const timer = setTimeout(() => {
          s.close();
          resolve(undefined);
        }, 300);
        s.on("message", (m: Buffer) => {
          clearTimeout(timer);
          s.close();
          resolve(m[3]! & 0x0f);
        });
        s.send(buildQuery(name), port, "127.0.0.1");
      });
    expect(await ask("api.payments.internal")).toBe(2);
    await ask("cp.example.internal"); // forwarded to 127.0.0.1:53 (no answer expected here)
    expect(running.measure!()).toMatchObject({ queries_faulted: 1, queries_forwarded: 1 });

    await running.revert();
    expect(nft.hasTable()).toBe(false);
    expect(nft.calls.filter((c) => c.startsWith("nft delete"))).toEqual(["nft delete table inet handle 7"]);
    expect(await ask("api.payments.internal")).toBeUndefined(); // the responder is closed
    await running.revert(); // idempotent
    running = undefined;
  });

  it("a stale table is refused (nothing merged into it), a refused load leaves nothing, and the responder is closed either way", async () => {
    const stale = fakeNft({ existing: true });
    const k = kind(resolvConf("nameserver 127.0.0.1\n"), stale);
    const ctx = makeCtx();
    await expect(k.start(k.validate({}, host), ctx)).rejects.toThrow(
      "the nftables table inet firedrill_dns already exists: another dns-fault holds it, or one was left behind by an agent that could not clean up.",
    );
    expect(ctx.records).toEqual([]);
    expect(stale.calls.some((c) => c.startsWith("nft -f"))).toBe(false);

    const refused = fakeNft({ failLoad: "Error: Could not process rule: Operation not permitted" });
    const k2 = kind(resolvConf("nameserver 127.0.0.1\n"), refused);
    const ctx2 = makeCtx();
    await expect(k2.start(k2.validate({}, host), ctx2)).rejects.toThrow(/^firedrill-agent must run as root \(or with CAP_NET_ADMIN\)/);
    expect(ctx2.records.at(-1)).toEqual({ family: "inet", table: "firedrill_dns", created: false });
  });

  it("reverts from the journal record alone, and only its own table", async () => {
    const nft = fakeNft({ existing: true });
    const k = kind(resolvConf("nameserver 127.0.0.1\n"), nft);
    await k.revertRecord({ family: "inet", table: "firedrill_dns", created: true, handle: 7 }, { log, holderAlive: false });
    expect(nft.hasTable()).toBe(false);
    await k.revertRecord({ family: "inet", table: "firedrill_dns", created: true, handle: 7 }, { log, holderAlive: false }); // gone: fine
    await expect(k.revertRecord({ family: "inet", table: "firedrill", created: true }, { log, holderAlive: false })).rejects.toThrow(
      "the journal record names the nftables table inet firedrill, which is not dns-fault's (inet firedrill_dns); refusing to delete it",
    );
  });
});
