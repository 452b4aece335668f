/** A progress bar on a terminal (redrawn in place), or a plain line every few seconds when output is a file or pipe. */
export interface ProgressOptions {
  stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Minimum interval between plain lines (not a TTY). */
  plainEveryMs?: number;
  now?: () => number;
}

export class Progress {
  private readonly tty: boolean;
  private readonly plainEveryMs: number;
  private readonly now: () => number;
  private startedAt = 0;
  private startDone = 0;
  private lastPlainAt = 0;
  private lastPlainDone = -1;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly options: ProgressOptions,
  ) {
    this.tty = Boolean(options.stream.isTTY);
    this.plainEveryMs = options.plainEveryMs ?? 5000;
    this.now = options.now ?? Date.now;
  }

  /** `done` items of `total`; the rate counts only items done while this bar runs (not earlier runs). */
  update(done: number, extra = ''): void {
    const now = this.now();
    if (this.startedAt === 0) {
      this.startedAt = now;
      this.startDone = done;
    }
    const line = this.format(done, now, extra);
    if (this.tty) {
      const width = this.options.stream.columns ?? 100;
      this.options.stream.write(`\r${line.slice(0, width - 1).padEnd(Math.min(width - 1, line.length + 2))}`);
      this.drawn = true;
    } else if (
      (now - this.lastPlainAt >= this.plainEveryMs && done !== this.lastPlainDone) ||
      (done >= this.total && this.lastPlainDone < this.total)
    ) {
      this.options.stream.write(`${line}\n`);
      this.lastPlainAt = now;
      this.lastPlainDone = done;
    }
  }

  /** Ends the bar's line on a terminal. */
  finish(): void {
    if (this.tty && this.drawn) this.options.stream.write('\n');
    this.drawn = false;
  }

  format(done: number, now: number, extra = ''): string {
    const total = Math.max(this.total, 1);
    const fraction = Math.min(1, done / total);
    const elapsed = (now - this.startedAt) / 1000;
    const rate = elapsed > 0.2 ? (done - this.startDone) / elapsed : 0;
    const remaining = this.total - done;
    const eta =
      remaining <= 0
        ? `took ${formatDuration(elapsed)}`
        : rate > 0
          ? `ETA ${formatDuration(remaining / rate)}`
          : 'ETA --:--';
    const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
    const counts = `${String(done).padStart(String(this.total).length)}/${this.total}`;
    const parts = [this.label.padEnd(9), counts, pct, `${rate.toFixed(1)}/s`, eta];
    if (this.tty) parts.splice(1, 0, bar(fraction, 20));
    if (extra) parts.push(extra);
    return parts.join(' ');
  }
}

function bar(fraction: number, width: number): string {
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
