// The sign-in page's script: POSTs the user token the person typed to
// /v1/session as JSON and, once the node answers with a session (an HttpOnly
// cookie holding a random id, never the token), keeps the session's CSRF
// token in this origin's storage (which no page on another port can read)
// for the dashboard's requests, and opens the dashboard.  The user token
// goes in the request body only: never in a URL, a cookie or storage.
'use strict';

const form = document.getElementById('signin');
const error = document.getElementById('error');

function showError(text) {
  error.textContent = text;
  error.hidden = false;
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = document.getElementById('token');
  const button = form.querySelector('button');
  button.disabled = true;
  error.hidden = true;
  try {
    const r = await fetch('/v1/session', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: {'Content-Type': 'application/json', 'Accept': 'application/json'},
      body: JSON.stringify({token: input.value})});
    let answer = null;
    try { answer = await r.json(); } catch (e) { answer = null; }
    if (r.ok && answer && typeof answer.csrf_token === 'string') {
      input.value = '';
      window.localStorage.setItem('ts_csrf', answer.csrf_token);
      window.location.replace('/dashboard');
      return;
    }
    showError((answer && typeof answer.error === 'string') ? answer.error
                                                           : 'The node answered HTTP ' + r.status + '.');
  } catch (e) {
    showError('Cannot reach the node: ' + e.message);
  } finally {
    button.disabled = false;
  }
});
