// The doctor's working-hours editor: time zone, slot length and pauses, weekly hours with
// breaks, days off, and the booking rules; the hub's 422 fields shown next to the inputs.

import { get, put } from '../../api.js';
import { announce, clearFieldErrors, field, h, messageBox, plain, showFieldErrors, syncLiveActions } from '../../ui.js';
import { intervalsEditor } from './intervals.js';
import { overridesEditor } from './overrides.js';

const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const DAY_NAMES = {
  monday: 'Monday',
  tuesday: 'Tuesday',
  wednesday: 'Wednesday',
  thursday: 'Thursday',
  friday: 'Friday',
  saturday: 'Saturday',
  sunday: 'Sunday',
};

function numberInput(value, attrs, onValue) {
  return h('input', {
    type: 'number',
    inputmode: 'numeric',
    value: String(value),
    ...attrs,
    oninput: (e) => onValue(e.target.value),
  });
}

function asNumber(text) {
  return /^-?\d+$/.test(String(text).trim()) ? Number(text) : text;
}

function check(input, name, label) {
  return h('div', { class: 'field check', dataset: { field: name } }, h('label', {}, input, label));
}

function checkbox(checked, onValue) {
  return h('input', { type: 'checkbox', checked, onchange: (e) => onValue(e.target.checked) });
}

/** The hours card; `saved` runs after each save (the appointments' outside-hours marks). */
export function hoursEditor({ live, me, life, saved }) {
  const card = h('section', { class: 'card', id: 'hours', 'aria-labelledby': 'hours-title' });
  const hoursMessage = messageBox('hours-message');
  let doc = null;
  let slotMinutes = 60; // as saved, for appointments the feed brings before a reload

  function render() {
    if (!doc) return;
    const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    const zoneList = h('datalist', { id: 'zones' }, zones.map((z) => h('option', { value: z })));
    const weekly = DAYS.map((day) =>
      h(
        'fieldset',
        { class: 'day-hours', dataset: { field: `weekly.${day}` } },
        h('legend', {}, DAY_NAMES[day]),
        intervalsEditor(doc.weekly[day], `weekly.${day}`, DAY_NAMES[day]),
      ),
    );
    const overrides = overridesEditor(doc.overrides);
    const tz = h('input', {
      type: 'text',
      list: 'zones',
      value: doc.timezone,
      autocomplete: 'off',
      spellcheck: 'false',
      oninput: (e) => {
        doc.timezone = e.target.value.trim();
      },
    });
    const policy = doc.policy;
    const number = (key, attrs, target = doc) => numberInput(target[key], attrs, (v) => {
      target[key] = asNumber(v);
    });
    const save = h('button', { type: 'submit', dataset: { needsLive: '' } }, 'Save working hours');
    const form = h(
      'form',
      { class: 'form hours-form', novalidate: true, 'aria-labelledby': 'hours-title' },
      zoneList,
      h(
        'div',
        { class: 'grid-2' },
        field('Time zone', tz, { name: 'timezone', hint: 'Where you work, e.g. Europe/Berlin' }),
        field('Slot length (minutes)', number('slot_minutes', { min: '5', max: '240', step: '5' }), { name: 'slot_minutes', hint: '5 to 240' }),
        field('Pause between slots (minutes)', number('buffer_minutes', { min: '0', max: '240' }), { name: 'buffer_minutes' }),
        field('Minimum notice (minutes)', number('notice_minutes', { min: '0' }), { name: 'notice_minutes' }),
        field('Bookable up to (days ahead)', number('horizon_days', { min: '1', max: '730' }), { name: 'horizon_days' }),
      ),
      h(
        'fieldset',
        { class: 'weekly', dataset: { field: 'weekly' } },
        h('legend', {}, 'Weekly hours'),
        h('p', { class: 'hint' }, 'Two or more intervals on a day leave a break between them. A day without hours is a day off. "00:00" as an end means midnight.'),
        h('div', { class: 'week-hours' }, weekly),
      ),
      h('fieldset', { class: 'overrides', dataset: { field: 'overrides' } }, h('legend', {}, 'Days off and special dates'), overrides.list, overrides.add),
      h(
        'fieldset',
        { class: 'policy', dataset: { field: 'policy' } },
        h('legend', {}, 'Booking rules'),
        h(
          'div',
          { class: 'grid-2' },
          field('Patients may cancel until (minutes before the start)', number('cancel_cutoff_minutes', { min: '0', step: '15' }, policy), {
            name: 'policy.cancel_cutoff_minutes',
            hint: '1440 minutes is 24 hours',
          }),
          field('No-show can be marked after (minutes)', number('no_show_grace_minutes', { min: '0' }, policy), { name: 'policy.no_show_grace_minutes' }),
        ),
        check(checkbox(policy.allow_late_cancel, (v) => {
          policy.allow_late_cancel = v;
        }), 'policy.allow_late_cancel', ' Allow late cancellations (recorded as late)'),
        check(checkbox(policy.one_per_patient, (v) => {
          policy.one_per_patient = v;
        }), 'policy.one_per_patient', ' One upcoming appointment per patient'),
      ),
      hoursMessage.element,
      h('div', { class: 'actions' }, save),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      submit(form, save);
    });
    card.replaceChildren(
      h('h2', { id: 'hours-title' }, 'Working hours'),
      h('p', { class: 'muted' }, 'Changing your hours never moves or cancels an appointment.'),
      form,
    );
    hoursMessage.element.setAttribute('tabindex', '-1');
    syncLiveActions(card, live.isLive);
  }

  async function submit(form, save) {
    clearFieldErrors(form);
    hoursMessage.clear();
    save.disabled = true;
    save.textContent = 'Saving…';
    const body = {
      ...doc,
      overrides: doc.overrides.map((o) => ({ from: o.from, to: o.to || null, intervals: o.intervals })),
    };
    try {
      setDoc(await put(`/doctors/${me.id}/availability`, body));
      render();
      const fresh = document.getElementById('hours-message');
      hoursMessage.success('Working hours saved. New bookings follow them; existing appointments stay as they are.');
      if (fresh) fresh.focus();
      announce('Working hours saved.');
      saved();
    } catch (error) {
      if (error.fields && error.fields.length) {
        const unplaced = showFieldErrors(form, error.fields);
        const count = error.fields.length;
        hoursMessage.error(
          [`The hours were not saved: ${count === 1 ? 'one problem needs' : `${count} problems need`} fixing (marked below).`, ...unplaced].join(' '),
        );
      } else {
        hoursMessage.error(`The hours were not saved. ${plain(error)}`);
      }
    } finally {
      save.textContent = 'Save working hours';
      save.disabled = false;
    }
  }

  function setDoc(stored) {
    doc = structuredClone(stored);
    for (const day of DAYS) doc.weekly[day] = doc.weekly[day] || [];
    doc.overrides = (doc.overrides || []).map((o) => ({ ...o, intervals: o.intervals || [] }));
    slotMinutes = doc.slot_minutes;
  }

  async function load() {
    card.replaceChildren(h('h2', { id: 'hours-title' }, 'Working hours'), h('p', { class: 'muted' }, 'Loading…'));
    try {
      const stored = await get(`/doctors/${me.id}/availability`);
      if (life.disposed) return;
      setDoc(stored);
      render();
    } catch (error) {
      if (!life.disposed) card.append(h('p', { class: 'message error', role: 'alert' }, `Your hours could not be loaded. ${plain(error)}`));
    }
  }

  load();
  return { card, slotMinutes: () => slotMinutes };
}
