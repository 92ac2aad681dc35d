import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_SERVER, configLocation, readConfig, readTokenFile, resolveSettings, writeConfig } from "./config.js";
import { CliError } from "./errors.js";

const TOKEN = "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const OTHER = "fdt_ba9876543210_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const mode = (path: string) => statSync(path).mode & 0o777;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "firedrill-cli-config-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("configLocation", () => {
  it("is FIREDRILL_CONFIG, else under XDG_CONFIG_HOME, else under ~/.config", () => {
    expect(configLocation({ FIREDRILL_CONFIG: "/etc/fd.json", XDG_CONFIG_HOME: "/x" })).toEqual({ file: "/etc/fd.json", ownDir: false });
    expect(configLocation({ XDG_CONFIG_HOME: "/x" })).toEqual({ file: "/x/firedrill/config.json", ownDir: true });
    expect(configLocation({ HOME: "/home/sre" }).file).toMatch(/\/\.config\/firedrill\/config\.json$/);
  });
});

describe("writeConfig", () => {
  it("writes 0600 in a created 0700 folder, atomically, and narrows firedrill's own folder to 0700", () => {
    const env = { XDG_CONFIG_HOME: join(dir, "xdg") };
    const location = configLocation(env);
    writeConfig(location, { server: "https://cp.example:7080", token: TOKEN });
    expect(mode(location.file)).toBe(0o600);
    expect(mode(join(dir, "xdg", "firedrill"))).toBe(0o700);
    expect(JSON.parse(readFileSync(location.file, "utf8"))).toEqual({ server: "https://cp.example:7080", token: TOKEN });

    chmodSync(join(dir, "xdg", "firedrill"), 0o755);
    chmodSync(location.file, 0o644);
    writeConfig(location, { server: "https://cp.example:7080", token: OTHER });
    expect(mode(join(dir, "xdg", "firedrill"))).toBe(0o700);
    expect(mode(location.file)).toBe(0o600);
    expect(readConfig(location.file).token).toBe(OTHER);
    expect(readdirSync(join(dir, "xdg", "firedrill"))).toEqual(["config.json"]);
  });

  it("creates a FIREDRILL_CONFIG folder 0700 but leaves an existing one as it is", () => {
    const created = configLocation({ FIREDRILL_CONFIG: join(dir, "new", "fd.json") });
    writeConfig(created, { token: TOKEN });
    expect(mode(join(dir, "new"))).toBe(0o700);
    mkdirSync(join(dir, "shared"), { mode: 0o755 });
    chmodSync(join(dir, "shared"), 0o755);
    writeConfig(configLocation({ FIREDRILL_CONFIG: join(dir, "shared", "fd.json") }), { token: TOKEN });
    expect(mode(join(dir, "shared"))).toBe(0o755);
    expect(mode(join(dir, "shared", "fd.json"))).toBe(0o600);
  });
});

describe("readConfig", () => {
  it("is empty when missing, and names the file when broken", () => {
    expect(readConfig(join(dir, "none.json"))).toEqual({});
    const file = join(dir, "config.json");
    writeFileSync(file, "{ nope");
    expect(() => readConfig(file)).toThrow(/^the config file .*config\.json is not valid JSON \(.*\): fix it, or delete it and run firedrill login again$/);
    writeFileSync(file, JSON.stringify({ server: 7, caFingerprint: "md5:x" }));
    try {
      readConfig(file);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(CliError);
      expect((err as CliError).message).toBe(`the config file ${file} is not a firedrill config: fix it, or delete it and run firedrill login again`);
      expect((err as CliError).issues.map((i) => i.field)).toEqual(["server", "caFingerprint"]);
    }
  });
});

describe("resolveSettings", () => {
  const saved = (config: object) => {
    const file = join(dir, "config.json");
    writeFileSync(file, JSON.stringify(config));
    return { FIREDRILL_CONFIG: file };
  };

  it("defaults to the local server with no token", () => {
    const s = resolveSettings({}, { FIREDRILL_CONFIG: join(dir, "none.json") });
    expect(s).toMatchObject({ server: DEFAULT_SERVER, serverFrom: "default" });
    expect(s.token).toBeUndefined();
  });

  it("takes the config file, then the environment over it, then the flags over both", () => {
    const env = saved({ server: "https://cp.example:7080/", token: TOKEN });
    expect(resolveSettings({}, env)).toMatchObject({
      server: "https://cp.example:7080",
      serverFrom: "config",
      token: TOKEN,
      tokenSource: "config",
      tokenFrom: `the config file ${env.FIREDRILL_CONFIG}`,
    });

    const viaEnv = resolveSettings({}, { ...env, FIREDRILL_SERVER: "https://cp.example:7080", FIREDRILL_TOKEN: ` ${OTHER}\n` });
    expect(viaEnv).toMatchObject({ server: "https://cp.example:7080", serverFrom: "FIREDRILL_SERVER", token: OTHER, tokenFrom: "FIREDRILL_TOKEN" });

    const tokenFile = join(dir, "token");
    writeFileSync(tokenFile, `${TOKEN}\n\n`);
    const viaFlags = resolveSettings({ server: "http://127.0.0.1:9", tokenFile }, { ...env, FIREDRILL_SERVER: "https://x.example", FIREDRILL_TOKEN: OTHER });
    expect(viaFlags).toMatchObject({ server: "http://127.0.0.1:9", serverFrom: "--server", token: TOKEN, tokenFrom: `--token-file ${tokenFile}` });
  });

  it("does not send the saved token, nor trust the saved CA, for another server", () => {
    const env = saved({ server: "https://cp.example:7080", token: TOKEN, caCert: undefined });
    const other = resolveSettings({ server: "https://evil.example" }, env);
    expect(other.token).toBeUndefined();
    expect(other.configServer).toBe("https://cp.example:7080");
  });

  it("refuses a server that is not an http(s) URL and an unusable token file, without printing the token", () => {
    expect(() => resolveSettings({ server: "cp.example:7080" }, { FIREDRILL_CONFIG: join(dir, "none.json") })).toThrow(
      '--server "cp.example:7080" is not an http(s) URL; use e.g. https://cp.example.internal:7080 (set --server or FIREDRILL_SERVER)',
    );
    expect(() => readTokenFile(join(dir, "missing"))).toThrow(`cannot read the token file ${join(dir, "missing")}: no such file`);
    const file = join(dir, "token");
    writeFileSync(file, "\n");
    expect(() => readTokenFile(file)).toThrow(`the token file ${file} is empty; it should hold one API token (fdt_…)`);
    writeFileSync(file, `${TOKEN}\n${OTHER}\n`);
    let message = "";
    try {
      readTokenFile(file);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toBe(`the token file ${file} does not hold a single API token (fdt_…): it has spaces, line breaks or control characters`);
    expect(message).not.toContain(TOKEN);
    expect(existsSync(file)).toBe(true);
  });
});
