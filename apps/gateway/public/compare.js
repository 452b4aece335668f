// Compare: two photos side by side, the score of their largest faces and the decision.
import { api } from './api.js';
import { busy, decodeImage, drawFaces, dropZone, errorBox, h, scoreClass } from './ui.js';

export function compareView() {
  const errors = errorBox();
  const sides = { a: side('a', 'First photo'), b: side('b', 'Second photo') };
  const verdict = h('div.verdict#compare-result', { hidden: true });
  const submit = h('button.primary#compare-run', { type: 'button', disabled: true }, 'Compare');

  function side(key, label) {
    const canvas = h('canvas.photo', { hidden: true });
    const state = { file: null, bitmap: null, canvas };
    const zone = dropZone(label, async (file) => {
      state.file = file;
      state.bitmap = await decodeImage(file);
      if (state.bitmap) {
        drawFaces(canvas, state.bitmap, [], { maxWidth: 520 });
        canvas.hidden = false;
      }
      verdict.hidden = true;
      submit.disabled = !(sides.a.file && sides.b.file);
    });
    zone.input.name = `compare-${key}`;
    state.el = h('div.card.compare-side', zone, canvas);
    return state;
  }

  submit.addEventListener('click', () =>
    busy(submit, errors, async () => {
      const form = new FormData();
      form.append('image_a', sides.a.file, sides.a.file.name);
      form.append('image_b', sides.b.file, sides.b.file.name);
      const r = await api('POST', '/v1/compare', { form });
      for (const [s, face] of [
        [sides.a, r.face_a],
        [sides.b, r.face_b],
      ]) {
        if (s.bitmap) drawFaces(s.canvas, s.bitmap, [{ box: face.box }], { maxWidth: 520 });
      }
      verdict.hidden = false;
      verdict.className = `verdict ${r.match ? 'same' : 'different'}`;
      verdict.replaceChildren(
        h('div.big-score', { class: `t-${scoreClass(r.score)}` }, r.score.toFixed(1), h('small', ' / 100')),
        h('div.decision', r.match ? 'Same person' : 'Different people'),
        h('div.muted.small', `similarity ${r.similarity.toFixed(4)} · match at score ≥ ${r.threshold}`),
      );
    }),
  );

  return h(
    'div.view',
    h('h1', 'Compare'),
    h('p.muted', 'The largest face of each photo is compared.'),
    errors,
    h('div.compare', sides.a.el, sides.b.el),
    h('div.row.center', submit),
    verdict,
  );
}
