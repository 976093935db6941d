// CNI error codes (SPEC.md "Error" table) and the error type that carries one.

/** Well-known CNI error codes. */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  InvalidNetns: 8,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

/** An error with a CNI code, printed as the spec's error JSON by the plugin entry. */
export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details = "",
    options?: ErrorOptions,
  ) {
    super(msg, options);
    this.name = "CniError";
  }
}

/** Shape of the spec's error JSON. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/** Turns anything thrown into the spec's error JSON; unknown errors become code 999. */
export function toErrorJson(err: unknown, cniVersion: string): CniErrorJson {
  if (err instanceof CniError) {
    return {
      cniVersion,
      code: err.code,
      msg: err.message,
      ...(err.details ? { details: err.details } : {}),
    };
  }
  const msg = err instanceof Error ? err.message : String(err);
  return { cniVersion, code: ErrorCode.Internal, msg };
}
