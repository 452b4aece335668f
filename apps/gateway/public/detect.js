// Detect: boxes, the five landmarks and quality of every face in a photo.
import { api } from './api.js';
import { busy, decodeImage, drawFaces, dropZone, errorBox, faceColor, h, plural } from './ui.js';

export function detectView() {
  const errors = errorBox();
  const canvas = h('canvas.photo#detect-canvas', { hidden: true });
  const summary = h('p.summary#detect-summary');
  const table = h('div#detect-faces');

  const zone = dropZone('Photo to analyse', (file) =>
    busy(null, errors, async () => {
      summary.textContent = `Detecting faces in ${file.name}…`;
      table.replaceChildren();
      canvas.hidden = true;
      const form = new FormData();
      form.append('image', file, file.name);
      form.append('max_faces', '50');
      const [bitmap, result] = await Promise.all([decodeImage(file), api('POST', '/v1/detect', { form })]).catch(
        (err) => {
          summary.textContent = '';
          throw err;
        },
      );
      summary.textContent = `${file.name}: ${result.image.width}×${result.image.height} ${result.image.format}, ${plural(result.face_num, 'face')}`;
      if (bitmap) {
        drawFaces(
          canvas,
          bitmap,
          result.faces.map((f, i) => ({ ...f, label: `#${i + 1} ${f.quality.level} ${f.quality.score.toFixed(2)}` })),
        );
        canvas.hidden = false;
      }
      table.replaceChildren(facesTable(result.faces));
    }),
  );
  zone.input.name = 'detect-image';

  return h(
    'div.view',
    h('h1', 'Detect'),
    h('p.muted', 'Boxes, the five landmarks (eyes, nose, mouth) and the quality level and score of every face.'),
    errors,
    h('div.card', zone, summary, canvas, table),
  );
}

function facesTable(faces) {
  if (faces.length === 0) return h('p.muted', 'No face found.');
  const fmt = (n, d = 1) => (typeof n === 'number' ? n.toFixed(d) : '–');
  return h(
    'table.data',
    h(
      'thead',
      h(
        'tr',
        ['#', 'box (x, y, w×h)', 'detection', 'quality', 'score', 'size', 'blur', 'yaw / pitch / roll'].map((t) =>
          h('th', t),
        ),
      ),
    ),
    h(
      'tbody',
      faces.map((f, i) => {
        const q = f.quality;
        const b = f.box;
        return h(
          'tr',
          h('td', h('span.swatch', { style: `background:${faceColor(i)}` }), i + 1),
          h('td', `${Math.round(b.x)}, ${Math.round(b.y)}, ${Math.round(b.width)}×${Math.round(b.height)}`),
          h('td', fmt(f.score, 3)),
          h('td', h(`span.badge.q-${q.level.toLowerCase()}`, q.level)),
          h('td', fmt(q.score, 3)),
          h('td', fmt(q.size, 0)),
          h('td', fmt(q.blur, 0)),
          h('td', `${fmt(q.yaw, 0)}° / ${fmt(q.pitch, 0)}° / ${fmt(q.roll, 0)}°`),
        );
      }),
    ),
  );
}
