/** DNS messages for tests: a query, and an answer with one A record. */

/** A standard query for `name` (A, IN), with RD set and an EDNS OPT record when asked. */
export function buildQuery(name: string, opts: { id?: number; qtype?: number; edns?: boolean; flags?: number } = {}): Buffer {
  const labels = name === "" ? [] : name.split(".");
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l)]), Buffer.from(l)])), Buffer.from([0])]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(opts.id ?? 0x1234, 0);
  header.writeUInt16BE(opts.flags ?? 0x0100, 2); // RD
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(opts.edns ? 1 : 0, 10);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(opts.qtype ?? 1, 0);
  tail.writeUInt16BE(1, 2);
  const opt = opts.edns ? Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]) : Buffer.alloc(0);
  return Buffer.concat([header, qname, tail, opt]);
}

/** An answer to `query` (its question at 12..end) with one A record for `address`. */
export function buildAnswer(query: Buffer, address: string): Buffer {
  let end = 12;
  while (query[end] !== 0) end += query[end]! + 1;
  end += 5;
  const out = Buffer.concat([query.subarray(0, end), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...address.split(".").map(Number)])]);
  out[2] = 0x81;
  out[3] = 0x80;
  out.writeUInt16BE(1, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(0, 10);
  return out;
}
