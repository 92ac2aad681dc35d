/**
 * Binds protobuf-es service descriptors to @grpc/grpc-js: one source of truth for the schema (the
 * generated descriptor), typed server handlers and typed clients, no proto-loader.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";

type MethodOf<S extends GenServiceMethods, K extends keyof S> = S[K];
type In<M extends GenServiceMethods[string]> = MessageShape<M["input"]>;
type Out<M extends GenServiceMethods[string]> = MessageShape<M["output"]>;

/** The grpc-js handler type for each method of a protobuf-es service. */
export type ServiceHandlers<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? grpc.handleUnaryCall<In<S[K]>, Out<S[K]>>
    : S[K]["methodKind"] extends "server_streaming"
      ? grpc.handleServerStreamingCall<In<S[K]>, Out<S[K]>>
      : S[K]["methodKind"] extends "client_streaming"
        ? grpc.handleClientStreamingCall<In<S[K]>, Out<S[K]>>
        : grpc.handleBidiStreamingCall<In<S[K]>, Out<S[K]>>;
};

/** The grpc-js client method type for each method of a protobuf-es service. */
export type ServiceClient<S extends GenServiceMethods> = grpc.Client & {
  [K in keyof S]: MethodOf<S, K>["methodKind"] extends "bidi_streaming"
    ? (metadata?: grpc.Metadata, options?: grpc.CallOptions) => grpc.ClientDuplexStream<In<S[K]>, Out<S[K]>>
    : MethodOf<S, K>["methodKind"] extends "server_streaming"
      ? (request: In<S[K]>, metadata?: grpc.Metadata, options?: grpc.CallOptions) => grpc.ClientReadableStream<Out<S[K]>>
      : MethodOf<S, K>["methodKind"] extends "client_streaming"
        ? (
            metadata: grpc.Metadata,
            options: grpc.CallOptions,
            callback: grpc.requestCallback<Out<S[K]>>,
          ) => grpc.ClientWritableStream<In<S[K]>>
        : (
            request: In<S[K]>,
            metadata: grpc.Metadata,
            options: grpc.CallOptions,
            callback: grpc.requestCallback<Out<S[K]>>,
          ) => grpc.ClientUnaryCall;
};

function serializer(desc: DescMessage) {
  return (message: MessageShape<DescMessage>): Buffer => Buffer.from(toBinary(desc, message));
}

function deserializer(desc: DescMessage) {
  return (bytes: Buffer): MessageShape<DescMessage> => fromBinary(desc, bytes);
}

/**
 * Builds the grpc-js service definition of a protobuf-es service. Method paths are the canonical
 * `/<package>.<Service>/<Method>`; keys are the methods' local (camelCase) names.
 */
export function createServiceDefinition<S extends GenServiceMethods>(
  service: GenService<S>,
): grpc.ServiceDefinition<ServiceHandlers<S> & grpc.UntypedServiceImplementation> {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition as grpc.ServiceDefinition<ServiceHandlers<S> & grpc.UntypedServiceImplementation>;
}

/** A constructor for typed grpc-js clients of a protobuf-es service. */
export type ServiceClientConstructor<S extends GenServiceMethods> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => ServiceClient<S>;

/** Creates a typed grpc-js client constructor for a protobuf-es service. */
export function createClientConstructor<S extends GenServiceMethods>(
  service: GenService<S>,
): ServiceClientConstructor<S> {
  const ctor = grpc.makeGenericClientConstructor(
    createServiceDefinition(service) as grpc.ServiceDefinition,
    service.typeName,
  );
  return ctor as unknown as ServiceClientConstructor<S>;
}

/** The typed grpc-js client of a protobuf-es service descriptor: `ClientOf<typeof AgentService>`. */
export type ClientOf<T> = T extends GenService<infer S> ? ServiceClient<S> : never;

/**
 * Registers typed handlers for a protobuf-es service on a grpc-js server: each handler's call
 * type is inferred from the descriptor.
 */
export function addService<S extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<S>,
  handlers: ServiceHandlers<S>,
): void {
  server.addService(
    createServiceDefinition(service) as grpc.ServiceDefinition,
    handlers as unknown as grpc.UntypedServiceImplementation,
  );
}
