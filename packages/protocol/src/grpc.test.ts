import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  AgentService,
  addService,
  ConnectRequestSchema,
  ConnectResponseSchema,
  createClientConstructor,
  createServiceDefinition,
  durationFromMs,
  durationToMs,
} from "./index.js";
import type { ConnectResponse } from "./index.js";

describe("grpc-js binding of the protobuf-es descriptor", () => {
  let server: grpc.Server | undefined;
  afterEach(() => server?.forceShutdown());

  it("carries typed messages both ways on a bidi stream over loopback", async () => {
    server = new grpc.Server();
    const unimplemented = (_call: unknown, callback: grpc.sendUnaryData<never>) => callback({ code: grpc.status.UNIMPLEMENTED } as grpc.ServiceError);
    addService(server, AgentService, {
      enroll: unimplemented,
      renewCertificate: unimplemented,
      connect(call) {
        call.on("data", (req) => {
          if (req.message.case === "hello") {
            call.write(
              create(ConnectResponseSchema, {
                message: {
                  case: "welcome",
                  value: { agentId: req.message.value.agentId, leaseTtl: durationFromMs(3000) },
                },
              }),
            );
            call.end();
          }
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server!.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const Client = createClientConstructor(AgentService);
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const stream = client.connect();
    const got = new Promise<ConnectResponse>((resolve) => stream.on("data", resolve));
    stream.write(create(ConnectRequestSchema, { message: { case: "hello", value: { agentId: "a-1" } } }));
    const response = await got;
    expect(response.message.case).toBe("welcome");
    if (response.message.case === "welcome") {
      expect(response.message.value.agentId).toBe("a-1");
      expect(durationToMs(response.message.value.leaseTtl)).toBe(3000);
    }
    stream.end();
    client.close();
  });

  it("uses the canonical method path", () => {
    const def = createServiceDefinition(AgentService);
    expect(def.connect.path).toBe("/firedrill.v1.AgentService/Connect");
    expect(def.connect.requestStream && def.connect.responseStream).toBe(true);
  });
});
