/**
 * The uploads of import requests, kept in memory for the detection stage when it runs in the same process (the
 * embedded gateway), so it does not read back the file just written: on this 2-core VM a read-back cost ~0.45 ms of
 * CPU per 340 KB photo (four thread-pool round trips and a fresh buffer), ~1 % of an item's whole cost.
 *
 * Bounded by bytes: an upload that does not fit is not held, and the stage reads it from the blob store as a worker
 * in another process would. Each upload is taken once (a retry reads the file). Entries nobody takes (an item whose
 * import was deleted before it ran) expire after `maxAgeMs`.
 */
export class UploadHandoff {
  private readonly held = new Map<string, { data: Uint8Array; at: number }>();
  private bytes = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly maxAgeMs = 5 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Holds `data` for `key` if it fits; the caller keeps the file either way. */
  offer(key: string, data: Uint8Array): boolean {
    this.expire();
    if (this.held.has(key) || this.bytes + data.byteLength > this.maxBytes) return false;
    this.held.set(key, { data, at: this.now() });
    this.bytes += data.byteLength;
    return true;
  }

  /** The bytes held for `key`, no longer held after this call; undefined when not held. */
  take(key: string): Uint8Array | undefined {
    const entry = this.held.get(key);
    if (!entry) return undefined;
    this.held.delete(key);
    this.bytes -= entry.data.byteLength;
    return entry.data;
  }

  /** Bytes held now (metrics, tests). */
  get heldBytes(): number {
    return this.bytes;
  }

  private expire(): void {
    const cutoff = this.now() - this.maxAgeMs;
    // Insertion order is age order.
    for (const [key, entry] of this.held) {
      if (entry.at > cutoff) break;
      this.take(key);
    }
  }
}
