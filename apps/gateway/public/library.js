// Library: groups, their users with face thumbnails, enrol a face, delete groups, users and faces.
import { api, enc, listAll } from './api.js';
import { busy, dropZone, errorBox, h, plural, thumbnail } from './ui.js';

const USERS_PAGE = 50;

export function libraryView() {
  const errors = errorBox();
  const groupList = h('ul.list#group-list');
  const detail = h('section.card.detail#group-detail', h('p.muted', 'Pick a group, or create one.'));
  let selected = sessionStorage.getItem('facesearch.group');

  const groupInput = h('input#new-group', { name: 'group_id', placeholder: 'new group id', required: true });
  const createButton = h('button.primary', { type: 'submit' }, 'Create');
  const createForm = h(
    'form.inline',
    {
      onsubmit: (e) => {
        e.preventDefault();
        busy(createButton, errors, async () => {
          const group = await api('POST', '/v1/groups', { json: { group_id: groupInput.value.trim() } });
          groupInput.value = '';
          await loadGroups(group.group_id);
        });
      },
    },
    groupInput,
    createButton,
  );

  async function loadGroups(select = selected) {
    const groups = await listAll('/v1/groups');
    groupList.replaceChildren(
      ...groups.map((g) =>
        h(
          'li',
          { class: g.group_id === select ? 'active' : undefined, dataset: { group: g.group_id } },
          h('button.link.grow', { type: 'button', onclick: () => selectGroup(g.group_id) }, g.group_id),
        ),
      ),
    );
    if (groups.length === 0) groupList.append(h('li.muted', 'No groups yet.'));
    if (select && groups.some((g) => g.group_id === select)) await selectGroup(select);
    else showNothing();
  }

  function showNothing() {
    selected = null;
    sessionStorage.removeItem('facesearch.group');
    detail.replaceChildren(h('p.muted', 'Pick a group, or create one.'));
  }

  async function selectGroup(groupId) {
    selected = groupId;
    sessionStorage.setItem('facesearch.group', groupId);
    for (const li of groupList.children) li.classList.toggle('active', li.dataset.group === groupId);
    detail.replaceChildren(groupDetail(groupId, errors, () => loadGroups(null)));
  }

  busy(null, errors, () => loadGroups());
  return h(
    'div.view',
    h('h1', 'Library'),
    errors,
    h('div.columns', h('aside.card.groups', h('h2', 'Groups'), createForm, groupList), detail),
  );
}

function groupDetail(groupId, errors, onDeleted) {
  const users = h('div.users#users');
  const more = h('button.secondary', { type: 'button', hidden: true }, 'Load more users');
  const count = h('span.muted');
  let cursor;
  let shown = 0;

  async function loadUsers(reset) {
    if (reset) {
      users.replaceChildren();
      cursor = undefined;
      shown = 0;
    }
    const page = await api('GET', `/v1/groups/${enc(groupId)}/users`, { query: { limit: USERS_PAGE, cursor } });
    const cards = await Promise.all(page.items.map((u) => userCard(groupId, u, errors, () => loadUsers(true))));
    users.append(...cards);
    shown += page.items.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    count.textContent = cursor ? `${shown}+ users` : plural(shown, 'user');
    if (shown === 0) users.replaceChildren(h('p.muted', 'No users yet: enrol a face below, or use Import.'));
  }
  more.addEventListener('click', () => busy(more, errors, () => loadUsers(false)));

  const deleteButton = h('button.danger', { type: 'button' }, 'Delete group');
  deleteButton.addEventListener('click', () => {
    if (!confirm(`Delete group '${groupId}' with all its users and faces?`)) return;
    busy(deleteButton, errors, async () => {
      await api('DELETE', `/v1/groups/${enc(groupId)}`);
      await onDeleted();
    });
  });

  busy(null, errors, () => loadUsers(true));
  return h(
    'div',
    h('div.row.spread', h('h2', groupId, ' ', count), deleteButton),
    enrolForm(groupId, errors, () => loadUsers(true)),
    users,
    more,
  );
}

function enrolForm(groupId, errors, onEnrolled) {
  let file = null;
  const userInput = h('input#enrol-user', { name: 'user_id', placeholder: 'user id', required: true });
  const info = h('input#enrol-info', { name: 'user_info', placeholder: 'user info (optional)' });
  const chosen = h('span.muted.file-name', 'no photo chosen');
  const zone = dropZone(
    'Photo',
    (f) => {
      file = f;
      chosen.textContent = f.name;
    },
    { name: 'enrol-image' },
  );
  zone.classList.add('compact');
  const submit = h('button.primary', { type: 'submit' }, 'Enrol face');
  const status = h('span.ok-text');
  return h(
    'form.card.inset.enrol',
    {
      onsubmit: (e) => {
        e.preventDefault();
        status.textContent = '';
        if (!file) return errors.show({ message: 'Choose a photo to enrol.' });
        busy(submit, errors, async () => {
          const form = new FormData();
          form.append('image', file, file.name);
          if (info.value.trim()) form.append('user_info', info.value.trim());
          const userId = userInput.value.trim();
          const face = await api('POST', `/v1/groups/${enc(groupId)}/users/${enc(userId)}/faces`, { form });
          status.textContent = `Enrolled ${userId} (quality ${face.quality.level}).`;
          file = null;
          chosen.textContent = 'no photo chosen';
          zone.input.value = '';
          await onEnrolled();
        });
      },
    },
    h('h3', 'Enrol a face'),
    h('div.row', userInput, info),
    h('div.row', zone, chosen),
    h('div.row', submit, status),
  );
}

async function userCard(groupId, user, errors, onChanged) {
  const { items: faces } = await api('GET', `/v1/groups/${enc(groupId)}/users/${enc(user.user_id)}/faces`);
  const base = `/v1/groups/${enc(groupId)}/users/${enc(user.user_id)}`;
  const removeUser = h('button.icon.danger-text', { type: 'button', title: `Delete user ${user.user_id}` }, 'Delete');
  removeUser.addEventListener('click', () => {
    if (!confirm(`Delete user '${user.user_id}' and ${plural(faces.length, 'face')}?`)) return;
    busy(removeUser, errors, async () => {
      await api('DELETE', base);
      await onChanged();
    });
  });
  const faceTiles = faces.map((f) => {
    const remove = h('button.remove', { type: 'button', title: 'Delete this face', 'aria-label': 'Delete face' }, '×');
    remove.addEventListener('click', () => {
      if (!confirm(`Delete this face of '${user.user_id}'?`)) return;
      busy(remove, errors, async () => {
        await api('DELETE', `${base}/faces/${enc(f.face_id)}`);
        await onChanged();
      });
    });
    return h(
      'div.face-tile',
      thumbnail(groupId, user.user_id, f.face_id, { title: `${f.face_id} · quality ${f.quality.level}` }),
      remove,
    );
  });
  return h(
    'article.user',
    { dataset: { user: user.user_id } },
    h(
      'div.row.top',
      h('div.grow', h('strong.user-id', user.user_id), user.user_info ? h('div.muted.small', user.user_info) : null),
      removeUser,
    ),
    h('div.faces', faceTiles.length ? faceTiles : h('span.muted', 'no faces')),
    h('div.muted.small', plural(faces.length, 'face')),
  );
}
