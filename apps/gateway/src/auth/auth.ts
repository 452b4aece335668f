import type { FaceSearchConfig } from '@facesearch/common';
import { AuthService, errors, type Principal } from '@facesearch/core';
import {
  type CanActivate,
  createParamDecorator,
  type ExecutionContext,
  Inject,
  Injectable,
  SetMetadata,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { CONFIG } from '../tokens';

export type Access = 'public' | 'admin' | 'app';
const ACCESS = 'facesearch:access';

/** Who may call a route; the default (no decorator) is an app key. */
export const Public = () => SetMetadata(ACCESS, 'public' satisfies Access);
export const AdminOnly = () => SetMetadata(ACCESS, 'admin' satisfies Access);

export type AuthedRequest = Request & { principal?: Principal };

/** The app of the calling key; every library route is scoped to it. */
export const AppId = createParamDecorator((_: unknown, ctx: ExecutionContext): string => {
  const principal = ctx.switchToHttp().getRequest<AuthedRequest>().principal;
  if (principal?.kind !== 'app') throw errors.unauthorized();
  return principal.appId;
});

export function apiKeyOf(req: Request): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const header = req.headers['x-api-key'];
  return typeof header === 'string' && header.length > 0 ? header : undefined;
}

/** Fixed one-minute windows per key; in memory, so the limit is per gateway instance. */
export class RateLimiter {
  private window = 0;
  private counts = new Map<string, number>();

  constructor(readonly perMinute: number) {}

  hit(key: string, now = Date.now()): boolean {
    if (this.perMinute <= 0) return true;
    const window = Math.floor(now / 60_000);
    if (window !== this.window) {
      this.window = window;
      this.counts = new Map();
    }
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    return n <= this.perMinute;
  }

  /** Whole seconds until the current window ends (when a limited key may call again); at least 1. */
  retryAfterSeconds(now = Date.now()): number {
    return Math.max(1, Math.ceil((60_000 - (now % 60_000)) / 1000));
  }
}

@Injectable()
export class AuthGuard implements CanActivate {
  private readonly limiter: RateLimiter;

  constructor(
    private readonly reflector: Reflector,
    private readonly auth: AuthService,
    @Inject(CONFIG) config: FaceSearchConfig,
  ) {
    this.limiter = new RateLimiter(config.rateLimitPerMinute);
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access =
      this.reflector.getAllAndOverride<Access | undefined>(ACCESS, [context.getHandler(), context.getClass()]) ?? 'app';
    if (access === 'public') return true;
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const principal = await this.auth.authenticate(apiKeyOf(req));
    if (access === 'admin' && principal.kind !== 'admin')
      throw errors.forbidden('This route needs the admin key (ADMIN_API_KEY).');
    if (access === 'app' && principal.kind !== 'app') {
      throw errors.forbidden("This route needs an app's API key; the admin key only manages apps and keys.");
    }
    const limit = this.limiter;
    if (!limit.hit(principal.kind === 'app' ? principal.keyId : 'admin')) {
      throw errors.rateLimited(limit.perMinute).retryAfter(limit.retryAfterSeconds());
    }
    req.principal = principal;
    return true;
  }
}
