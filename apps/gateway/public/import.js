// Bulk import: a folder whose subfolders are users, sent as one import, with live progress and failures.
import { api, enc, listAll, upload } from './api.js';
import { busy, errorBox, formatBytes, h, plural } from './ui.js';

const IMAGE_EXT = /\.(jpe?g|png|webp|gif|tiff?|avif|bmp)$/i;
const ID = /^[A-Za-z0-9_-]{1,128}$/;
/** One multipart request holds at most this much (the API's limits are 1000 files and MAX_REQUEST_BYTES). */
const MULTIPART_MAX_FILES = 1000;
const MULTIPART_MAX_BYTES = 90 * 1024 * 1024;
const UPLOAD_CONCURRENCY = 4;
const POLL_MS = 700;

/** Files of the picked folder: `root/user/.../file.jpg` -> user; files elsewhere are listed as skipped. */
export function planImport(files) {
  const items = [];
  const skipped = [];
  for (const file of files) {
    const parts = (file.webkitRelativePath || file.name).split('/');
    const name = parts.slice(1).join('/') || file.name;
    if (parts.some((p) => p.startsWith('.'))) continue; // hidden files and folders
    if (!IMAGE_EXT.test(file.name)) skipped.push({ name, reason: 'not an image file name' });
    else if (parts.length < 3) skipped.push({ name, reason: 'not in a user subfolder' });
    else if (!ID.test(parts[1])) skipped.push({ name, reason: `folder '${parts[1]}' is not a valid user id` });
    else items.push({ file, user_id: parts[1], name });
  }
  return { items, skipped };
}

export function importView() {
  const errors = errorBox();
  let plan = null;
  let timer = null;
  let stopped = false;

  const groupInput = h('input#import-group', { name: 'group_id', list: 'import-groups', placeholder: 'group id' });
  const groupList = h('datalist#import-groups');
  groupInput.value = sessionStorage.getItem('facesearch.group') ?? '';
  busy(null, errors, async () => {
    const groups = await listAll('/v1/groups');
    groupList.replaceChildren(...groups.map((g) => h('option', { value: g.group_id })));
  });

  const folder = h('input#import-folder', { type: 'file', webkitdirectory: true, multiple: true, name: 'folder' });
  const planText = h('div.plan#import-plan', h('span.muted', 'Pick a folder: one subfolder per user, photos inside.'));
  const start = h('button.primary#import-start', { type: 'button', disabled: true }, 'Start import');
  const bar = h('div.progress-fill');
  const progressLabel = h('span#import-progress-label');
  const counts = h('div.counts#import-counts');
  const progress = h(
    'div.progress-block#import-progress',
    { hidden: true },
    h('div.progress', bar),
    progressLabel,
    counts,
  );
  const failures = h('div#import-failures');

  folder.addEventListener('change', () => {
    plan = planImport([...folder.files]);
    const users = new Set(plan.items.map((i) => i.user_id));
    const bytes = plan.items.reduce((n, i) => n + i.file.size, 0);
    planText.replaceChildren(
      h('strong', `${plural(plan.items.length, 'photo')} of ${plural(users.size, 'user')}`),
      ` (${formatBytes(bytes)})`,
      plan.skipped.length
        ? h(
            'details',
            h('summary', `${plural(plan.skipped.length, 'file')} skipped`),
            h(
              'ul.small',
              plan.skipped.map((s) => h('li', `${s.name}: ${s.reason}`)),
            ),
          )
        : null,
    );
    start.disabled = plan.items.length === 0;
  });

  function showProgress(fraction, label) {
    progress.hidden = false;
    bar.style.width = `${Math.round(fraction * 1000) / 10}%`;
    progressLabel.textContent = label;
  }

  async function submit(groupId) {
    const { items } = plan;
    const total = items.reduce((n, i) => n + i.file.size, 0);
    if (items.length <= MULTIPART_MAX_FILES && total <= MULTIPART_MAX_BYTES) {
      const form = new FormData();
      form.append('group_id', groupId);
      // File names are only keys inside this request; `name` keeps the path for the report.
      form.append(
        'items',
        JSON.stringify(items.map((it, i) => ({ user_id: it.user_id, file: `f${i}`, name: it.name }))),
      );
      for (const [i, it] of items.entries()) form.append('files', it.file, `f${i}`);
      return upload('POST', '/v1/imports', form, (f) =>
        showProgress(f, f < 1 ? `Uploading ${Math.round(f * 100)}%` : 'Uploaded; starting the import…'),
      );
    }
    // Too big for one request: each photo goes to its own upload URL, then the import names the objects.
    const keyed = new Array(items.length);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < items.length && !stopped) {
        const i = next++;
        const ticket = await api('POST', '/v1/uploads');
        const res = await fetch(ticket.upload_url, { method: 'PUT', body: items[i].file });
        if (!res.ok) throw { message: `Uploading ${items[i].name} failed (HTTP ${res.status}).` };
        keyed[i] = { user_id: items[i].user_id, object_key: ticket.object_key, name: items[i].name };
        done++;
        showProgress(done / items.length, `Uploading ${done} / ${items.length}`);
      }
    };
    await Promise.all(Array.from({ length: UPLOAD_CONCURRENCY }, worker));
    return api('POST', '/v1/imports', { json: { group_id: groupId, items: keyed } });
  }

  function render(job) {
    const done = job.succeeded + job.failed;
    const pct = Math.round(job.progress * 1000) / 10;
    showProgress(
      job.progress,
      `${job.status === 'completed' ? 'Done' : 'Importing'}: ${done} / ${job.total} (${pct}%)`,
    );
    counts.replaceChildren(
      h('span.count.ok', `${job.succeeded} succeeded`),
      h('span.count.bad', `${job.failed} failed`),
      h('span.count', `${job.pending} pending`),
      h('span.badge#import-status', job.status),
    );
  }

  async function poll(job) {
    render(job);
    if (stopped) return;
    if (job.status === 'queued' || job.status === 'running') {
      timer = setTimeout(
        () =>
          busy(null, errors, async () => poll(await api('GET', `/v1/imports/${enc(job.import_id)}`))).then(() => {
            if (!errors.hidden) start.disabled = false; // polling failed: allow another try
          }),
        POLL_MS,
      );
      return;
    }
    start.disabled = false;
    const failed = await listAll(`/v1/imports/${enc(job.import_id)}/items`, { status: 'failed' });
    failures.replaceChildren(failed.length ? failedTable(failed) : h('p.ok-text', 'Every photo was imported.'));
  }

  start.addEventListener('click', () => {
    const groupId = groupInput.value.trim();
    if (!ID.test(groupId)) return errors.show({ message: "Enter a group id (letters, digits, '_' or '-')." });
    sessionStorage.setItem('facesearch.group', groupId);
    failures.replaceChildren();
    counts.replaceChildren();
    start.disabled = true; // until this import ends
    busy(null, errors, async () => {
      showProgress(0, 'Uploading…');
      await poll(await submit(groupId));
    }).then(() => {
      if (!errors.hidden) start.disabled = false; // it failed before or while polling
    });
  });

  const view = h(
    'div.view',
    h('h1', 'Import'),
    h('p.muted', 'Each subfolder of the folder is a user (its name is the user id); each photo inside is one face.'),
    errors,
    h(
      'div.card',
      h('div.row.options', h('label', { for: 'import-group' }, 'Into group'), groupInput, groupList),
      h('div.row.options', h('label', { for: 'import-folder' }, 'Folder'), folder),
      planText,
      h('div.row', start),
      progress,
      failures,
    ),
  );
  view.leave = () => {
    stopped = true;
    clearTimeout(timer);
  };
  return view;
}

function failedTable(items) {
  return h(
    'div',
    h('h3', `Failed (${items.length})`),
    h(
      'table.data#import-failed',
      h('thead', h('tr', h('th', 'file'), h('th', 'user'), h('th', 'code'), h('th', 'message'))),
      h(
        'tbody',
        items.map((it) =>
          h(
            'tr',
            h('td', it.name ?? `#${it.index}`),
            h('td', it.user_id),
            h('td', h('code', it.error?.code ?? '?')),
            h('td.small', it.error?.message ?? ''),
          ),
        ),
      ),
    ),
  );
}
