// Small DOM helpers shared by the screens: no framework, just elements.
import { faceThumbnail } from './api.js';

/** h('div.card#id', {onclick, ...attrs}, ...children) */
export function h(tag, attrs, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || 'div');
  for (const part of rest) {
    if (part.startsWith('.')) el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = undefined;
  }
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.classList.add(...String(v).split(/\s+/).filter(Boolean));
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style')
      el.style.cssText = v; // CSSOM, which the page's CSP allows (style attributes it does not)
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An error line that shows the API's message (and code); hidden when empty. */
export function errorBox() {
  const el = h('div.error', { role: 'alert', hidden: true });
  el.show = (err) => {
    el.hidden = !err;
    el.textContent = err ? (err.code ? `${err.message} (${err.code})` : String(err.message ?? err)) : '';
  };
  el.clear = () => el.show(null);
  return el;
}

/** Runs an async action with a busy button and errors shown in `errors`. */
export async function busy(button, errors, action) {
  errors?.clear();
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (err) {
    if (errors) errors.show(err);
    else throw err;
  } finally {
    if (button) button.disabled = false;
  }
}

/** A drop area that is also a file picker; calls onFile(file) with the first image. */
export function dropZone(label, onFile, { accept = 'image/*', name } = {}) {
  const input = h('input', { type: 'file', accept, name, class: 'visually-hidden' });
  const text = h('span.drop-label', label);
  const zone = h('label.drop', input, h('span.drop-icon', '⬆'), text, h('span.muted', 'drop a photo here or click'));
  input.addEventListener('change', () => input.files[0] && onFile(input.files[0]));
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const file =
      [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/')) ?? e.dataTransfer?.files[0];
    if (file) onFile(file);
  });
  zone.input = input;
  return zone;
}

/** Decodes a file for drawing, upright (EXIF orientation applied, like the engine does). */
export async function decodeImage(file) {
  try {
    return await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    return null; // the browser cannot show it; the API may still read it (or say why not)
  }
}

const COLORS = ['#16a34a', '#2563eb', '#d97706', '#db2777', '#7c3aed', '#0891b2', '#dc2626', '#65a30d'];
export const faceColor = (i) => COLORS[i % COLORS.length];

/**
 * Draws the image scaled to fit `maxWidth`, then each face's box, landmarks and a label.
 * faces: [{box, landmarks?, label?}]; returns the scale used.
 */
export function drawFaces(canvas, bitmap, faces, { maxWidth = 900, landmarks = true } = {}) {
  const scale = Math.min(1, maxWidth / bitmap.width);
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const line = Math.max(2, Math.round(canvas.width / 300));
  faces.forEach((face, i) => {
    const color = faceColor(i);
    const { x, y, width, height } = face.box;
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x * scale, y * scale, width * scale, height * scale);
    if (landmarks && face.landmarks) {
      ctx.fillStyle = color;
      ctx.strokeStyle = '#fff';
      ctx.lineWidth = Math.max(1, line / 2);
      for (const p of landmarkPoints(face.landmarks)) {
        ctx.beginPath();
        ctx.arc(p.x * scale, p.y * scale, line * 2, 0, Math.PI * 2);
        ctx.fill();
        ctx.stroke();
      }
    }
    if (face.label) {
      const size = Math.max(12, Math.round(canvas.width / 55));
      ctx.font = `600 ${size}px system-ui, sans-serif`;
      const w = ctx.measureText(face.label).width + 10;
      const top = y * scale - size - 8 >= 0 ? y * scale - size - 8 : y * scale + height * scale;
      ctx.fillStyle = color;
      ctx.fillRect(x * scale - line / 2, top, w, size + 8);
      ctx.fillStyle = '#fff';
      ctx.fillText(face.label, x * scale + 5 - line / 2, top + size + 1);
    }
  });
  return scale;
}

/** The five points: eyes, nose and the mouth corners (or the mouth centre when corners are absent). */
export function landmarkPoints(l) {
  const mouth = l.mouth_left && l.mouth_right ? [l.mouth_left, l.mouth_right] : [l.mouth];
  return [l.left_eye, l.right_eye, l.nose, ...mouth].filter(Boolean);
}

/** A square crop of one face from a decoded image, as a canvas element. */
export function faceCrop(bitmap, box, size = 96) {
  const canvas = h('canvas.thumb', { width: size, height: size });
  const side = Math.max(box.width, box.height) * 1.5;
  const sx = box.x + box.width / 2 - side / 2;
  const sy = box.y + box.height / 2 - side / 2;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#e5e7eb';
  ctx.fillRect(0, 0, size, size);
  ctx.drawImage(bitmap, sx, sy, side, side, 0, 0, size, size);
  return canvas;
}

/** An <img> of an enrolled face, loaded through the API with the key. */
export function thumbnail(groupId, userId, faceId, { size = 72, title } = {}) {
  // No alt text while loading (it would show as broken text); the label is for screen readers.
  const img = h('img.thumb', {
    width: size,
    height: size,
    alt: '',
    'aria-label': `face of ${userId}`,
    title: title ?? `${userId} · ${faceId}`,
  });
  faceThumbnail(groupId, userId, faceId).then(
    (url) => {
      img.src = url;
    },
    () => img.classList.add('broken'),
  );
  return img;
}

export const scoreClass = (score) => (score >= 80 ? 'good' : score >= 60 ? 'fair' : 'poor');

export function scoreBar(score) {
  return h(
    'div.score',
    h('div.score-bar', h('div', { class: scoreClass(score), style: `width:${Math.max(2, Math.min(100, score))}%` })),
    h('span.score-value', score.toFixed(1)),
  );
}

export const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
