// The console's shell: sign-in, navigation between screens (hash routes), sign-out.
import { api, auth, setUnauthorizedHandler } from './api.js';
import { compareView } from './compare.js';
import { detectView } from './detect.js';
import { importView } from './import.js';
import { libraryView } from './library.js';
import { searchView } from './search.js';
import { busy, errorBox, h } from './ui.js';

const VIEWS = {
  library: libraryView,
  detect: detectView,
  search: searchView,
  compare: compareView,
  import: importView,
};
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const session = document.getElementById('session');
let signInMessage = null;
/** The current screen's cleanup (timers, object URLs). */
let leave = null;

function signInView() {
  const errors = errorBox();
  if (signInMessage) errors.show(signInMessage);
  signInMessage = null;
  const key = h('input#api-key', {
    type: 'password',
    name: 'api-key',
    autocomplete: 'off',
    placeholder: 'fsk_…',
    required: true,
  });
  const submit = h('button.primary', { type: 'submit' }, 'Sign in');
  const form = h(
    'form.card.signin',
    {
      onsubmit: (e) => {
        e.preventDefault();
        const value = key.value.trim();
        busy(submit, errors, async () => {
          // Any app route tells whether the key is valid, and that it is an app key (not the admin key).
          await api('GET', '/v1/groups', { query: { limit: 1 }, key: value });
          auth.set(value);
          location.hash = '#/library';
          route();
        });
      },
    },
    h('h1', 'Sign in'),
    h('p.muted', 'Enter an app API key. It stays in this browser tab only and is sent as a Bearer token.'),
    h('label', { for: 'api-key' }, 'API key'),
    key,
    errors,
    submit,
  );
  queueMicrotask(() => key.focus());
  return form;
}

function route() {
  leave?.();
  leave = null;
  const signedIn = Boolean(auth.key);
  nav.hidden = !signedIn;
  session.hidden = !signedIn;
  if (!signedIn) {
    main.replaceChildren(signInView());
    return;
  }
  document.getElementById('session-key').textContent = `key …${auth.key.slice(-4)}`;
  const name = location.hash.replace(/^#\/?/, '').split('/')[0] || 'library';
  const view = VIEWS[name] ?? VIEWS.library;
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.view === name);
  const screen = view();
  leave = screen.leave ?? null;
  main.replaceChildren(screen);
}

setUnauthorizedHandler((err) => {
  auth.clear();
  signInMessage = err;
  route();
});
document.getElementById('sign-out').addEventListener('click', () => {
  auth.clear();
  route();
});
window.addEventListener('hashchange', route);
route();
