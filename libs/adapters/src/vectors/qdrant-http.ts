import http from 'node:http';
import https from 'node:https';

/** Raised for a non-2xx answer; the message starts like the REST client's so the store maps both the same way. */
export class QdrantHttpError extends Error {
  constructor(
    readonly status: number,
    body: string,
  ) {
    super(`Unexpected Response: ${status} ${body.replace(/\s+/g, ' ').slice(0, 500)}`);
  }
}

/**
 * Minimal JSON client for Qdrant's hot paths (search, retrieve, upsert). The REST client's undici `fetch` adds
 * ~40 ms once an answer spans more than ~2 KB (BENCHMARKS.md, Problems 2); node:http with a keep-alive agent does not.
 */
export class QdrantHttp {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;

  constructor(
    url: string,
    private readonly apiKey: string | undefined,
    private readonly timeoutMs: number,
  ) {
    this.base = new URL(url);
    this.transport = this.base.protocol === 'https:' ? https : http;
    const AgentClass = this.base.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new AgentClass({ keepAlive: true, maxSockets: 32 });
  }

  /**
   * POSTs `body` as JSON to `path` (relative to the base URL) and returns the answer's `result`; `timeoutMs` bounds
   * this call more tightly than the client's own deadline.
   */
  post<T>(path: string, body: unknown, timeoutMs?: number): Promise<T> {
    return this.send<T>('POST', path, body, timeoutMs);
  }

  /** Sends `body` as JSON to `path` (relative to the base URL) and returns the answer's `result`. */
  send<T>(method: 'POST' | 'PUT', path: string, body: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body), 'utf8');
    const prefix = this.base.pathname.replace(/\/+$/, '');
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'content-length': payload.length,
    };
    if (this.apiKey) headers['api-key'] = this.apiKey;
    return new Promise<T>((resolve, reject) => {
      // A deadline on the whole exchange (like the REST client's), not just on socket idleness.
      const limit = Math.max(1, Math.min(timeoutMs, this.timeoutMs));
      const timer = setTimeout(() => req.destroy(new Error(`Qdrant request timed out after ${limit} ms`)), limit);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      const req = this.transport.request(
        {
          protocol: this.base.protocol,
          hostname: this.base.hostname,
          port: this.base.port || undefined,
          path: `${prefix}${path}`,
          method,
          headers,
          agent: this.agent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', fail);
          res.on('end', () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) return reject(new QdrantHttpError(status, text));
            try {
              resolve((JSON.parse(text) as { result: T }).result);
            } catch {
              reject(new Error(`Qdrant sent a non-JSON answer (status ${status})`));
            }
          });
        },
      );
      req.on('error', fail);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
