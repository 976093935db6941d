// A small CRI (runtime.v1) client for containerd, standing in for crictl (not packaged for
// Debian or npm). It loads our own cri.proto at run time: no protoc, no generated code.
// Pinned here, not in deno.json's imports: only this harness uses them.
// deno-lint-ignore no-import-prefix
import * as grpc from "npm:@grpc/grpc-js@1.14.7";
// deno-lint-ignore no-import-prefix
import * as protoLoader from "npm:@grpc/proto-loader@0.8.1";

const PROTO = new URL("./cri.proto", import.meta.url).pathname;

/** Plain CRI messages as proto-loader decodes them (snake_case keys, enums as strings). */
// deno-lint-ignore no-explicit-any
export type CriMessage = Record<string, any>;

type Unary = (
  req: CriMessage,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: CriMessage) => void,
) => void;

/** The RPCs the suite calls, each a promise with a deadline. */
export interface CriClient {
  call(method: string, req: CriMessage, timeoutMs?: number): Promise<CriMessage>;
  close(): void;
}

/**
 * Connects to the CRI socket of a containerd (`unix://` path).
 *
 * @example
 * const cri = criConnect("/tmp/x/containerd.sock");
 * const { version } = await cri.call("Version", {});
 */
export function criConnect(socket: string): CriClient {
  const def = protoLoader.loadSync(PROTO, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  });
  // deno-lint-ignore no-explicit-any
  const pkg = grpc.loadPackageDefinition(def) as any;
  const client = new pkg.runtime.v1.RuntimeService(
    `unix://${socket}`,
    grpc.credentials.createInsecure(),
  ) as grpc.Client & Record<string, Unary>;
  return {
    call(method, req, timeoutMs = 60_000) {
      const fn = client[method];
      if (typeof fn !== "function") throw new Error(`No CRI method ${method} in cri.proto`);
      return new Promise((resolve, reject) => {
        fn.call(
          client,
          req,
          new grpc.Metadata(),
          { deadline: Date.now() + timeoutMs },
          (err, res) =>
            err ? reject(new Error(`CRI ${method}: ${err.details || err.message}`)) : resolve(res),
        );
      });
    },
    close: () => client.close(),
  };
}
