import { describe, expect, it } from "vitest";
import { buildQuery } from "../testing/dns-query.js";
import { RCODE, faultAnswer, messageId, parseQuestion, withId } from "./dns-message.js";

describe("the DNS wire format dns-fault reads", () => {
  it("reads a query's question, lower-cased, and where it ends", () => {
    const q = buildQuery("API.Payments.Internal", { id: 0xbeef, qtype: 28, edns: true });
    expect(parseQuestion(q)).toEqual({ id: 0xbeef, name: "api.payments.internal", qtype: 28, qclass: 1, end: 12 + 23 + 4 });
    expect(parseQuestion(buildQuery(""))).toMatchObject({ name: "" });
  });

  it("writes bytes that are not letters, digits, - or _ as \\DDD, so that no glob of names matches them", () => {
    const q = buildQuery("a.b");
    q[13] = 0x2e; // "." inside the label
    expect(parseQuestion(q)).toMatchObject({ name: "\\046.b" });
  });

  it.each([
    ["short", Buffer.alloc(5)],
    ["response", buildQuery("a.example", { flags: 0x8180 })],
    ["opcode", buildQuery("a.example", { flags: 0x2800 })], // UPDATE
    ["truncated", buildQuery("a.example").subarray(0, 20)],
    ["truncated", buildQuery("a.example").subarray(0, 24)],
  ])("says why a message is not a question it answers: %s", (why, msg) => {
    expect(parseQuestion(msg)).toBe(why);
  });

  it("refuses zero or several questions, compression pointers and names over 255 bytes", () => {
    const two = buildQuery("a.example");
    two.writeUInt16BE(2, 4);
    expect(parseQuestion(two)).toBe("qdcount");
    const pointer = Buffer.concat([buildQuery("").subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    expect(parseQuestion(pointer)).toBe("name");
    const long = buildQuery(Array.from({ length: 5 }, () => "x".repeat(63)).join("."));
    expect(parseQuestion(long)).toBe("name");
    const atLimit = buildQuery([..."abc"].map((c) => c.repeat(63)).concat("d".repeat(61)).join("."));
    expect(parseQuestion(atLimit)).toMatchObject({ name: expect.stringMatching(/^a{63}\.b{63}\.c{63}\.d{61}$/) });
  });

  it("answers with the query's id, question (its case kept), RD and CD, QR and RA set, and nothing else", () => {
    const query = buildQuery("Api.Payments.Internal", { id: 0x4242, edns: true, flags: 0x0110 }); // RD, CD
    const q = parseQuestion(query);
    if (typeof q !== "object") throw new Error(q);
    const answer = faultAnswer(query, q, RCODE.NXDOMAIN);
    expect(answer.length).toBe(q.end);
    expect(answer.readUInt16BE(0)).toBe(0x4242);
    expect(answer[2]).toBe(0x81); // QR, opcode 0, RD
    expect(answer[3]).toBe(0x80 | 0x10 | 3); // RA, CD, NXDOMAIN
    expect([answer.readUInt16BE(4), answer.readUInt16BE(6), answer.readUInt16BE(8), answer.readUInt16BE(10)]).toEqual([1, 0, 0, 0]);
    expect(answer.subarray(12).toString("latin1")).toContain("Api");
    expect(faultAnswer(query, q, RCODE.SERVFAIL)[3]! & 0x0f).toBe(2);
  });

  it("rewrites ids on a copy", () => {
    const query = buildQuery("a.example", { id: 1 });
    const copy = withId(query, 0xabcd);
    expect(messageId(copy)).toBe(0xabcd);
    expect(messageId(query)).toBe(1);
    expect(messageId(Buffer.alloc(3))).toBeUndefined();
  });
});
