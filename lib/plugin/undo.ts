// An undo list for ADD: each step that changed the node pushes how to take it back; on failure
// they run in reverse, undo failures are logged, and the original error is what the caller sees.

/** Reverse-order cleanup actions. */
export class UndoStack {
  private readonly steps: { what: string; fn: () => unknown }[] = [];

  push(what: string, fn: () => unknown): void {
    this.steps.push({ what, fn });
  }

  /** Runs every step, newest first; returns the ones that failed, for the log. */
  async unwind(): Promise<string[]> {
    const failed: string[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.fn();
      } catch (err) {
        failed.push(`${step.what}: ${(err as Error).message}`);
      }
    }
    return failed;
  }
}
