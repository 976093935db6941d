// The plugin's unix socket client through syscalls: connect errors by errno, a round trip with a
// listener of this test's, and deadlines that hold for a read and for a write that cannot finish.
import { Errno, SyscallError } from "../../../lib/sys/syscall.ts";
import { DeadlineExceeded, UnixStream } from "../../../lib/sys/unix_socket.ts";
import { assert, assertEquals, assertThrows } from "../../harness/assert.ts";

async function scratch(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "mycni-unix-" });
  return {
    path: `${dir}/s.sock`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("UnixStream.connect() fails at once with errno: no socket, a path too long", async () => {
  await using s = await scratch();
  const err = assertThrows(() => UnixStream.connect(s.path));
  assert(err instanceof SyscallError, String(err));
  assertEquals([err.errno, err.message], [
    Errno.ENOENT,
    `connect ${s.path}: No such file or directory`,
  ]);
  const long = `/tmp/${"x".repeat(110)}`;
  assertEquals(
    assertThrows(() => UnixStream.connect(long)).message,
    `Socket path ${long} is longer than 107 bytes`,
  );
});

Deno.test("UnixStream sends, receives what the peer wrote, then 0 when it hangs up", async () => {
  await using s = await scratch();
  using listener = Deno.listen({ transport: "unix", path: s.path });
  using stream = UnixStream.connect(s.path);
  const deadline = performance.now() + 2000;
  stream.send(new TextEncoder().encode("ping\n"), deadline);
  // The peer (this thread's event loop) reads the request and answers before we look.
  {
    using conn = await listener.accept();
    const buf = new Uint8Array(16);
    const n = await conn.read(buf);
    assertEquals(new TextDecoder().decode(buf.subarray(0, n!)), "ping\n");
    await conn.write(new TextEncoder().encode("pong\n"));
  }
  const buf = new Uint8Array(16);
  const n = stream.receive(buf, deadline);
  assertEquals(new TextDecoder().decode(buf.subarray(0, n)), "pong\n");
  assertEquals(stream.receive(buf, deadline), 0, "end of stream");
});

Deno.test("UnixStream.receive() throws DeadlineExceeded when nothing comes in time", async () => {
  await using s = await scratch();
  // Never accepted: the kernel completes the connect all the same, and nobody ever writes.
  using _listener = Deno.listen({ transport: "unix", path: s.path });
  using stream = UnixStream.connect(s.path);
  const started = performance.now();
  const err = assertThrows(() => stream.receive(new Uint8Array(16), started + 200));
  const ms = performance.now() - started;
  assert(err instanceof DeadlineExceeded, String(err));
  assertEquals(err.message, `answer on ${s.path}: deadline exceeded`);
  assert(ms >= 199 && ms < 1500, `gave up after ${ms} ms`);
  // A deadline already past: no wait at all.
  const late = assertThrows(() => stream.receive(new Uint8Array(16), performance.now() - 1));
  assert(late instanceof DeadlineExceeded, String(late));
});

Deno.test("UnixStream.send() throws DeadlineExceeded when the peer never reads a big write", async () => {
  await using s = await scratch();
  using _listener = Deno.listen({ transport: "unix", path: s.path });
  using stream = UnixStream.connect(s.path);
  const started = performance.now();
  // Far more than a unix socket buffers (~200 kB): the rest waits for room that never comes.
  const err = assertThrows(() => stream.send(new Uint8Array(8 << 20), started + 200));
  const ms = performance.now() - started;
  assert(err instanceof DeadlineExceeded, String(err));
  assert(ms >= 199 && ms < 1500, `gave up after ${ms} ms`);
});
