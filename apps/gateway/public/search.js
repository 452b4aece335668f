// Search: every face of a photo against the chosen groups, with its best matches or "no match".
import { api, listAll } from './api.js';
import {
  busy,
  decodeImage,
  drawFaces,
  dropZone,
  errorBox,
  faceColor,
  faceCrop,
  h,
  plural,
  scoreBar,
  thumbnail,
} from './ui.js';

export function searchView() {
  const errors = errorBox();
  const groupBoxes = h('div.checks#search-groups', h('span.muted', 'Loading groups…'));
  const topK = h('input#search-topk', { type: 'number', min: 1, max: 20, value: 3, name: 'top_k' });
  const canvas = h('canvas.photo#search-canvas', { hidden: true });
  const summary = h('p.summary#search-summary');
  const results = h('div.results#search-results');
  let lastFile = null;

  busy(null, errors, async () => {
    const groups = await listAll('/v1/groups');
    const remembered = sessionStorage.getItem('facesearch.group');
    groupBoxes.replaceChildren(
      ...groups.map((g, i) =>
        h(
          'label.check',
          h('input', {
            type: 'checkbox',
            value: g.group_id,
            checked: remembered ? g.group_id === remembered : i === 0,
          }),
          g.group_id,
        ),
      ),
    );
    if (groups.length === 0) groupBoxes.replaceChildren(h('span.muted', 'No groups: create one in Library first.'));
  });

  const run = (file) =>
    busy(null, errors, async () => {
      lastFile = file;
      const groupIds = [...groupBoxes.querySelectorAll('input:checked')].map((c) => c.value);
      if (groupIds.length === 0) throw { message: 'Pick at least one group to search.' };
      summary.textContent = `Searching ${file.name} in ${groupIds.join(', ')}…`;
      results.replaceChildren();
      canvas.hidden = true;
      const form = new FormData();
      form.append('image', file, file.name);
      form.append('group_ids', groupIds.join(','));
      form.append('top_k', String(Number(topK.value) || 3));
      form.append('max_faces', '10');
      let bitmap;
      let result;
      try {
        [bitmap, result] = await Promise.all([decodeImage(file), api('POST', '/v1/search', { form })]);
      } catch (err) {
        summary.textContent = '';
        throw err;
      }
      summary.textContent = `${file.name}: ${plural(result.face_num, 'face')} searched in ${groupIds.join(', ')}`;
      if (bitmap) {
        drawFaces(
          canvas,
          bitmap,
          result.results.map((r, i) => ({ ...r, label: `#${i + 1} ${r.matches[0]?.user_id ?? 'no match'}` })),
          { landmarks: false },
        );
        canvas.hidden = false;
      }
      results.replaceChildren(...result.results.map((r, i) => faceResult(r, i, bitmap)));
    });

  const zone = dropZone('Photo to search', run);
  zone.input.name = 'search-image';
  const again = h('button.secondary', { type: 'button', onclick: () => lastFile && run(lastFile) }, 'Search again');

  return h(
    'div.view',
    h('h1', 'Search'),
    errors,
    h(
      'div.card',
      h('div.row.options', h('strong', 'Groups'), groupBoxes),
      h('div.row.options', h('label', { for: 'search-topk' }, 'Matches per face'), topK, again),
      zone,
      summary,
      h('div.search-layout', canvas, results),
    ),
  );
}

function faceResult(r, i, bitmap) {
  const matches = r.matches.length
    ? h(
        'ol.matches',
        r.matches.map((m) =>
          h(
            'li.match',
            thumbnail(m.group_id, m.user_id, m.face_id, { size: 56 }),
            h('div.grow', h('strong.match-user', m.user_id), h('div.muted.small', m.group_id)),
            scoreBar(m.score),
          ),
        ),
      )
    : h('p.no-match', 'No match');
  return h(
    'article.face-result',
    { dataset: { face: i + 1 } },
    h(
      'div.face-head',
      h('span.swatch', { style: `background:${faceColor(i)}` }),
      h('strong', `Face #${i + 1}`),
      h('span.muted.small', `quality ${r.quality.level}`),
    ),
    h(
      'div.row.top',
      bitmap ? h('figure.probe', faceCrop(bitmap, r.box, 72), h('figcaption', 'in photo')) : null,
      matches,
    ),
  );
}
