import { describe, expect, it } from "vitest";
import { describeConnectFailure } from "./connect-error.js";

/** grpc-js's UNAVAILABLE as it reaches the link: the last socket error and an empty resolution note. */
const unavailable = (last: string) => ({
  code: 14,
  details: `No connection established. Last error: ${last}. Resolution note: `,
  message: `14 UNAVAILABLE: No connection established. Last error: ${last}. Resolution note: `,
});

describe("describeConnectFailure", () => {
  it("a closed port: connection refused, with the address and what to check; no empty resolution note", () => {
    const failure = describeConnectFailure("127.0.0.1:7070", unavailable("Error: connect ECONNREFUSED 127.0.0.1:7070"));
    expect(failure.reason).toBe("connection refused");
    expect(failure.message).toBe(
      "cannot connect to the control plane at 127.0.0.1:7070: connection refused: nothing listens on that port; " +
        "check that `firedrill server` is running there and that --server is the control plane's gRPC address " +
        "(`firedrill server --grpc-addr`, port 7070 in the examples), not its HTTP API (--http-addr)",
    );
    // The TLS probe's socket error says the same.
    const probe = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:7070"), { code: "ECONNREFUSED" });
    expect(describeConnectFailure("127.0.0.1:7070", probe).message).toBe(failure.message);
  });

  it("the HTTP API's port: not TLS (mTLS agents) or not gRPC (--insecure)", () => {
    const tls = describeConnectFailure(
      "127.0.0.1:7080",
      unavailable("Error: 803CCF194D7F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:\n"),
    );
    expect(tls.reason).toBe("not TLS");
    expect(tls.message).toMatch(/^cannot connect to the control plane at 127\.0\.0\.1:7080: the port answered, but not with TLS: it is not the control plane's gRPC port; --server must be/);
    const h2 = describeConnectFailure("127.0.0.1:7080", unavailable("Protocol error (2026-11-27T18:26:39.985Z)"));
    expect(h2.reason).toBe("not gRPC");
    expect(h2.message).toContain("the port answered, but not with gRPC (HTTP/2)");
    expect(h2.message).not.toContain("2026-");
  });

  it("a name that does not resolve, a dropped route, another server's certificate, anything else", () => {
    expect(describeConnectFailure("cp.invalid:7070", unavailable("Error: getaddrinfo ENOTFOUND cp.invalid")).message).toBe(
      "cannot connect to the control plane at cp.invalid:7070: the host name cp.invalid does not resolve; check the name in --server and this host's DNS",
    );
    expect(describeConnectFailure("10.0.0.9:7070", unavailable("Error: connect ETIMEDOUT 10.0.0.9:7070")).reason).toBe("no answer");
    expect(describeConnectFailure("10.0.0.9:7070", unavailable("Error: self-signed certificate in certificate chain")).reason).toBe("certificate not trusted");
    const other = describeConnectFailure("10.0.0.9:7070", { code: 14, details: "No connection established. Last error: Error: something new. Resolution note: DNS says hi" });
    expect(other.message).toMatch(/^cannot connect to the control plane at 10\.0\.0\.9:7070: something new \(DNS says hi\); check that `firedrill server` is running/);
    for (const f of [other, describeConnectFailure("x:1", new Error("boom"))]) expect(f.message).not.toContain("Resolution note");
  });
});
