// The HTTP API, with the key kept for this browser tab only (sessionStorage) and sent as a Bearer token.
const KEY_STORAGE = 'facesearch.apiKey';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const auth = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  },
  set(key) {
    sessionStorage.setItem(KEY_STORAGE, key);
  },
  clear() {
    sessionStorage.removeItem(KEY_STORAGE);
  },
};

/** Called when the API answers 401: the app signs the user out. */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function headers(key = auth.key) {
  return key ? { authorization: `Bearer ${key}` } : {};
}

async function errorOf(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const err = body?.error;
  return new ApiError(res.status, err?.code ?? `http_${res.status}`, err?.message ?? `${res.status} ${res.statusText}`);
}

/**
 * One API call. `json` sends a JSON body, `form` a FormData (multipart); the answer is parsed JSON,
 * or null for 204. Errors become ApiError with the API's code and message.
 */
export async function api(method, path, { json, form, query, key } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  const init = { method, headers: headers(key) };
  if (json !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new ApiError(0, 'network_error', `The service did not answer (${err.message}).`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && !key) onUnauthorized(err);
    throw err;
  }
  if (res.status === 204) return null;
  return res.json();
}

/** Multipart upload with progress (fetch has no upload progress): resolves with the parsed answer. */
export function upload(method, path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, 'network_error', 'The upload failed: the service did not answer.'));
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = undefined;
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
      const e = body?.error;
      const err = new ApiError(xhr.status, e?.code ?? `http_${xhr.status}`, e?.message ?? `HTTP ${xhr.status}`);
      if (xhr.status === 401) onUnauthorized(err);
      reject(err);
    };
    xhr.send(form);
  });
}

/** Every page of a paginated list. */
export async function listAll(path, query = {}) {
  const items = [];
  let cursor;
  do {
    const page = await api('GET', path, { query: { ...query, limit: 1000, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

const thumbnails = new Map();

/** An object URL of a face's cropped image (img src cannot carry the Bearer header, so it is fetched). */
export async function faceThumbnail(groupId, userId, faceId) {
  const path = `/v1/groups/${enc(groupId)}/users/${enc(userId)}/faces/${enc(faceId)}/image?crop=1`;
  if (!thumbnails.has(path)) {
    const loading = fetch(path, { headers: headers() }).then(async (res) => {
      if (!res.ok) throw await errorOf(res);
      return URL.createObjectURL(await res.blob());
    });
    thumbnails.set(path, loading);
    loading.catch(() => thumbnails.delete(path));
  }
  return thumbnails.get(path);
}

export const enc = encodeURIComponent;
