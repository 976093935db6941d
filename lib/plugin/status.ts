// STATUS (spec 1.1): ready when ADD could succeed: the IPAM state is usable and has room
// (or the delegated IPAM plugin says it is ready). Error 50 otherwise.
import { ipamFor, type Request } from "./request.ts";

/** Throws CNI error 50 when not ready. */
export async function status(req: Request): Promise<void> {
  await ipamFor(req).status();
}
