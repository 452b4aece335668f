/**
 * Lua scripts of RedisLibraryRepository: every write that checks-then-sets or touches several keys runs as one
 * script, so it is atomic against other connections (other gateways and workers).
 * Cascades build key names inside the script from the prefix (ARGV[1]); that is fine on one Redis server
 * (not Redis Cluster). Ids never contain ':', so `:` separates key parts unambiguously.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /** EVALSHA, falling back to EVAL once when the server has not cached the script yet (or was restarted). */
  async run(redis: Redis, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.call('EVALSHA', [this.sha, keys.length, ...keys, ...args]);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.call('EVAL', [this.source, keys.length, ...keys, ...args]);
    }
  }
}

/** KEYS: record, index zset. ARGV: json, member. Returns 0 when the record exists. */
export const createIfAbsent = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
`);

/** KEYS: key record (by hash), app's key_id -> hash map. ARGV: json, key_id, key_hash. */
export const createKey = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
`);

/** KEYS: app's key_id -> hash map. ARGV: prefix, key_id, revoked_at. A second revocation keeps the first time. */
export const revokeKey = new LuaScript(`
local hash = redis.call('HGET', KEYS[1], ARGV[2])
if not hash then return 0 end
local k = ARGV[1] .. 'key:' .. hash
local raw = redis.call('GET', k)
if not raw then return 0 end
local rec = cjson.decode(raw)
if rec.revoked_at == cjson.null or rec.revoked_at == nil then
  rec.revoked_at = ARGV[3]
  redis.call('SET', k, cjson.encode(rec))
end
return 1
`);

/**
 * KEYS: user record, group's users zset. ARGV: json of the new record, '1' to replace user_info, user_id.
 * Returns the stored record's json.
 */
export const upsertUser = new LuaScript(`
local raw = redis.call('GET', KEYS[1])
if raw then
  local rec = cjson.decode(raw)
  local new = cjson.decode(ARGV[1])
  if ARGV[2] == '1' then rec.user_info = new.user_info end
  rec.updated_at = new.updated_at
  raw = cjson.encode(rec)
else
  raw = ARGV[1]
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
end
redis.call('SET', KEYS[1], raw)
return raw
`);

/**
 * KEYS: face record, group's faces zset. ARGV: json, 'user_id:face_id', user_id, limit (0: none). Returns 0 when the
 * record exists, -1 when the user already has `limit` faces (checked and added in one step).
 */
export const addFace = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('ZLEXCOUNT', KEYS[2], '[' .. ARGV[3] .. ':', '(' .. ARGV[3] .. ';') >= limit then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
`);

/** KEYS: face record. ARGV: prefix, app_id. Returns 0 when absent. */
export const deleteFace = new LuaScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local face = cjson.decode(raw)
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. 'faces:' .. ARGV[2] .. ':' .. face.group_id, face.user_id .. ':' .. face.face_id)
return 1
`);

/** ARGV: prefix, app_id, group_id, user_id. Returns the removed face ids. */
export const deleteUser = new LuaScript(`
local p, app, g, u = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local fz = p .. 'faces:' .. app .. ':' .. g
local members = redis.call('ZRANGEBYLEX', fz, '[' .. u .. ':', '(' .. u .. ';')
local ids = {}
for i, m in ipairs(members) do
  local id = string.sub(m, #u + 2)
  ids[i] = id
  redis.call('DEL', p .. 'face:' .. app .. ':' .. id)
end
redis.call('ZREMRANGEBYLEX', fz, '[' .. u .. ':', '(' .. u .. ';')
redis.call('DEL', p .. 'user:' .. app .. ':' .. g .. ':' .. u)
redis.call('ZREM', p .. 'users:' .. app .. ':' .. g, u)
return ids
`);

/** ARGV: prefix, app_id, group_id. Returns the removed face ids. */
export const deleteGroup = new LuaScript(`
local p, app, g = ARGV[1], ARGV[2], ARGV[3]
local fz = p .. 'faces:' .. app .. ':' .. g
local uz = p .. 'users:' .. app .. ':' .. g
local ids = {}
for i, m in ipairs(redis.call('ZRANGE', fz, 0, -1)) do
  local id = string.match(m, ':(.*)$')
  ids[i] = id
  redis.call('DEL', p .. 'face:' .. app .. ':' .. id)
end
for _, u in ipairs(redis.call('ZRANGE', uz, 0, -1)) do
  redis.call('DEL', p .. 'user:' .. app .. ':' .. g .. ':' .. u)
end
redis.call('DEL', fz, uz, p .. 'group:' .. app .. ':' .. g)
redis.call('ZREM', p .. 'groups:' .. app, g)
return ids
`);

/**
 * ARGV: prefix, import_id, import json (or '' to write items only), '1' when unfinished, then
 * (index, status, item json) triples. Returns 0, writing nothing, when the import exists.
 * Large imports call this once per chunk of items, the record last, so no single call blocks Redis for long.
 */
export const createImport = new LuaScript(`
local p, id = ARGV[1], ARGV[2]
local ik = p .. 'import:' .. id
if redis.call('EXISTS', ik) == 1 then return 0 end
for i = 5, #ARGV, 3 do
  local idx, st = ARGV[i], ARGV[i + 1]
  redis.call('SET', p .. 'item:' .. id .. ':' .. idx, ARGV[i + 2])
  redis.call('ZADD', p .. 'items:' .. id, idx, idx)
  redis.call('ZADD', p .. 'items:' .. id .. ':' .. st, idx, idx)
end
if ARGV[3] ~= '' then
  redis.call('SET', ik, ARGV[3])
  if ARGV[4] == '1' then redis.call('ZADD', p .. 'imports:unfinished', 0, id) end
end
return 1
`);

/** KEYS: import record, unfinished zset. ARGV: status, updated_at, import_id. Returns 0 when absent. */
export const setImportStatus = new LuaScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local job = cjson.decode(raw)
job.status = ARGV[1]
job.updated_at = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(job))
if ARGV[1] == 'queued' or ARGV[1] == 'running' then
  redis.call('ZADD', KEYS[2], 0, ARGV[3])
else
  redis.call('ZREM', KEYS[2], ARGV[3])
end
return 1
`);

/**
 * ARGV: prefix, import_id, index, result json {status, face_id, error, attempts, updated_at}.
 * Returns 0 (and changes nothing) when the item is missing or already finished: a job delivered twice
 * counts once.
 */
export const finishImportItem = new LuaScript(`
local p, id, idx = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'item:' .. id .. ':' .. idx
local raw = redis.call('GET', k)
if not raw then return 0 end
local item = cjson.decode(raw)
local old = item.status
if old == 'succeeded' or old == 'failed' or old == 'cancelled' then return 0 end
local r = cjson.decode(ARGV[4])
item.status = r.status
item.face_id = r.face_id
item.error = r.error
item.attempts = r.attempts
item.updated_at = r.updated_at
redis.call('SET', k, cjson.encode(item))
redis.call('ZREM', p .. 'items:' .. id .. ':' .. old, idx)
redis.call('ZADD', p .. 'items:' .. id .. ':' .. r.status, idx, idx)
local jk = p .. 'import:' .. id
local jraw = redis.call('GET', jk)
if jraw then
  local job = cjson.decode(jraw)
  if r.status == 'succeeded' then job.succeeded = job.succeeded + 1 end
  if r.status == 'failed' then job.failed = job.failed + 1 end
  job.updated_at = r.updated_at
  redis.call('SET', jk, cjson.encode(job))
end
return 1
`);
