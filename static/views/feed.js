// Calendars: the "Calendar feed" card (a secret URL a calendar app subscribes to; turning it on
// again makes a new URL and the old one stops, turning it off revokes it) and the "Add to
// calendar" link of one appointment (its invite, fetched with the bearer token, saved from a
// Blob URL). The hub keeps only a digest of the feed's secret, so the URL is shown once.

import { del, post, request } from '../api.js';
import { announce, h, messageBox, plain } from '../ui.js';

/** The card for a patient (`owner` "patients") or a doctor ("doctors"; `names` offers the
 * choice of patient names instead of initials). */
export function feedCard({ owner, id, names = false }) {
  const path = `/${owner}/${id}/calendar-feed`;
  const message = messageBox(`feed-${owner}-message`);
  const url = h('input', { type: 'text', id: 'feed-url', readonly: true, 'aria-describedby': 'feed-url-hint', spellcheck: 'false' });
  const copy = h('button', { type: 'button', class: 'secondary', id: 'feed-copy', onclick: () => copyUrl() }, 'Copy');
  const webcal = h('a', { id: 'feed-webcal', href: '#' }, 'Open in your calendar app');
  const shown = h('div', { class: 'feed-url', hidden: true },
    h('label', { for: url.id }, 'Your feed URL'),
    h('p', { class: 'hint', id: 'feed-url-hint' }, 'Keep it private: anyone with it can read your appointments.'),
    h('div', { class: 'feed-copy' }, url, copy),
    h('p', {}, webcal));
  const choice = names ? h('input', { type: 'checkbox', id: 'feed-names' }) : null;
  const on = h('button', { type: 'button', id: 'feed-on', onclick: () => turnOn() }, 'Turn on');
  const off = h('button', { type: 'button', class: 'secondary', id: 'feed-off', onclick: () => turnOff() }, 'Turn off');
  const card = h('section', { class: 'card feed-card', 'aria-labelledby': 'feed-title' },
    h('h2', { id: 'feed-title' }, 'Calendar feed'),
    h('p', { class: 'muted' }, 'Subscribe in your calendar app to see your appointments there; it updates as they change.'),
    choice ? h('p', { class: 'check' }, h('label', { for: choice.id }, choice, ' Show patient names (otherwise initials)')) : null,
    h('div', { class: 'actions' }, on, off),
    message.element,
    shown);

  async function turnOn() {
    message.clear();
    on.disabled = true;
    try {
      const feed = await post(path, choice ? { names: choice.checked } : undefined);
      url.value = feed.url;
      webcal.href = feed.webcal;
      shown.hidden = false;
      on.textContent = 'New URL';
      message.success('Your calendar feed is on. A new URL stops the old one.');
      announce('Calendar feed turned on.');
      url.focus();
      url.select();
    } catch (error) {
      message.error(plain(error));
    } finally {
      on.disabled = false;
    }
  }

  async function turnOff() {
    message.clear();
    try {
      await del(path);
      shown.hidden = true;
      url.value = '';
      on.textContent = 'Turn on';
      message.success('Your calendar feed is off: its URL no longer works.');
      announce('Calendar feed turned off.');
    } catch (error) {
      message.error(plain(error));
    }
  }

  async function copyUrl() {
    try {
      await navigator.clipboard.writeText(url.value);
      copy.textContent = 'Copied';
      announce('Feed URL copied.');
    } catch {
      url.select(); // no clipboard (an insecure origin): selected, for the keyboard to copy
      message.info('Press Ctrl+C (or ⌘C) to copy the selected URL.');
    }
  }

  return card;
}

/** "Add to calendar": the appointment's invite as a file. `label` names it for screen readers. */
export function addToCalendar(appointmentId, label) {
  const feedback = messageBox(`ics-${appointmentId}-message`);
  const link = h(
    'a',
    {
      class: 'add-to-calendar',
      href: `/appointments/${appointmentId}/invite.ics`,
      dataset: { key: `ics-${appointmentId}` },
      'aria-label': `Add the appointment on ${label} to your calendar`,
      onclick: (event) => {
        event.preventDefault();
        save();
      },
    },
    'Add to calendar',
  );

  async function save() {
    feedback.clear();
    try {
      const blob = await request('GET', `/appointments/${appointmentId}/invite.ics`, { blob: true });
      const address = URL.createObjectURL(blob);
      const file = h('a', { href: address, download: `appointment-${appointmentId}.ics`, hidden: true });
      document.body.append(file);
      file.click();
      file.remove();
      setTimeout(() => URL.revokeObjectURL(address), 10_000);
    } catch (error) {
      feedback.error(plain(error));
    }
  }

  return h('span', { class: 'add-to-calendar-wrap' }, link, feedback.element);
}
